from runner.measure.dataset import random_token_prompts
from runner.measure.metrics import RequestRecord
from runner.measure.validity import check
from runner.plan.trial import LoadPoint


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


def test_range_ratio_conventions():
    import numpy as np

    from runner.measure.dataset import lengths
    v = lengths(4000, 100, 0.5, "vllm", np.random.default_rng(0))
    s = lengths(4000, 100, 0.5, "sglang", np.random.default_rng(0))
    assert min(v) >= 50 and max(v) <= 150 and 95 < sum(v) / len(v) < 105     # [L(1-r), L(1+r)]
    assert min(s) >= 50 and max(s) <= 100 and 70 < sum(s) / len(s) < 80      # [L*r, L]
    assert lengths(3, 100, 0.0, "vllm", np.random.default_rng(0)) == [100, 100, 100]
    # SGLang's own convention end to end: --random-range-ratio 1 is exact, 0 is 1..L (not exact)
    assert lengths(3, 100, 1.0, "sglang", np.random.default_rng(0)) == [100, 100, 100]
    s0 = lengths(4000, 100, 0.0, "sglang", np.random.default_rng(0))
    assert min(s0) == 1 and max(s0) == 100


def test_prefix_dataset_shares_a_prefix_within_groups():
    from runner.measure.dataset import build
    p = build(6, 40, 8, {"kind": "prefix", "prefix_len": 30, "groups": 2}, vocab_size=500, special_ids=[0],
              seed=1, salt=())
    assert all(len(x) == 40 for x in p.ids) and p.output_lens == [8] * 6
    assert p.ids[0][:30] == p.ids[2][:30] == p.ids[4][:30] != p.ids[1][:30] == p.ids[3][:30]
    assert p.ids[0][30:] != p.ids[2][30:]


def test_file_datasets_jsonl_and_sharegpt(tmp_path):
    import json

    from runner.measure.dataset import build
    enc = lambda text: [ord(c) for c in text]  # noqa: E731
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"prompt": "hello", "output_len": 3}\n{"prompt": "hi"}\n')
    p = build(4, 1, 9, {"kind": "file", "path": str(jl)}, vocab_size=500, special_ids=[], seed=0, salt=(),
              encode=enc)
    assert sorted(map(tuple, p.ids))[:2] == [tuple(enc("hello"))] * 2 and sorted(p.output_lens) == [3, 3, 9, 9]
    sg = tmp_path / "d.json"
    sg.write_text(json.dumps([{"conversations": [{"from": "human", "value": "abc"}, {"from": "gpt", "value": "xy"}]}]))
    p = build(2, 1, 9, {"kind": "file", "path": str(sg), "format": "sharegpt"}, vocab_size=500, special_ids=[],
              seed=0, salt=(), encode=enc)
    assert p.ids == [enc("abc")] * 2 and p.output_lens == [2, 2]
    assert p.digest == build(2, 1, 9, {"kind": "file", "path": str(sg), "format": "sharegpt"}, vocab_size=500,
                             special_ids=[], seed=0, salt=(), encode=enc).digest


def test_gamma_arrivals_have_the_requested_mean_rate_and_burstiness():
    import numpy as np

    from runner.measure.loadgen import arrivals
    a = arrivals(20001, rate=4.0, burstiness=1.0, seed=0)
    gaps = np.diff(a)
    assert a[0] == 0.0 and abs(gaps.mean() - 0.25) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05                      # Poisson: CV = 1
    b = np.diff(arrivals(20001, rate=4.0, burstiness=0.25, seed=0))
    assert abs(b.mean() - 0.25) < 0.02 and abs(b.std() / b.mean() - 2.0) < 0.15   # CV = 1/sqrt(shape)
