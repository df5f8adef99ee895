from runner.dataset import random_token_prompts
from runner.metrics import RequestRecord
from runner.trial import LoadPoint
from runner.validity import check


def test_prompts_have_exact_length_no_special_ids_and_are_reproducible():
    a = random_token_prompts(20, 37, vocab_size=50, special_ids=[0, 1, 2], seed=7, salt=(1,))
    b = random_token_prompts(20, 37, vocab_size=50, special_ids=[0, 1, 2], seed=7, salt=(1,))
    assert a == b and len(a) == 20 and all(len(p) == 37 for p in a)
    assert not {0, 1, 2} & {t for p in a for t in p}
    assert all(0 <= t < 50 for p in a for t in p)
    assert random_token_prompts(20, 37, 50, [0], seed=7, salt=(2,)) != a  # other load point, other prompts
    assert random_token_prompts(20, 37, 50, [0], seed=8, salt=(1,)) != a


LOAD = LoadPoint(input_len=10, output_len=4, concurrency=2, num_prompts=2)


def r(tokens, ok=True):
    return RequestRecord(index=0, prompt_tokens=10, intended=0, st=0, chunk_times=[0.1] * len(tokens),
                         chunk_tokens=tokens, ok=ok, error="" if ok else "boom")


def test_validity_gates():
    assert check([r([1, 1, 1, 1]), r([2, 2])], LOAD, 0.0) is None
    assert "no output tokens" in check([r([], ok=False), r([], ok=False)], LOAD, 1.0)
    assert "failure rate" in check([r([1, 1, 1, 1]), r([], ok=False)], LOAD, 0.0)
    assert check([r([1, 1, 1, 1]), r([], ok=False)], LOAD, 0.5) is None
    assert "ignore_eos" in check([r([1, 1, 1, 1]), r([1])], LOAD, 0.0)
    no_eos = LOAD.model_copy(update={"ignore_eos": False})
    assert check([r([1, 1, 1, 1]), r([1])], no_eos, 0.0) is None
    assert check([], LOAD, 0.0) == "no measured requests"
