"""Engine start errors → failure reasons, on the engines' own words (quoted from the vLLM 0.32/0.33
and SGLang 0.5.23 sources)."""

import pytest

from runner.cluster.actor import classify_start_error

OOM = [
    ValueError("Free memory on device cuda:0 (10.5/79.1 GiB) on startup is less than desired GPU memory "
               "utilization (0.9, 71.2 GiB). Decrease GPU memory utilization or reduce GPU memory used by "
               "other processes."),
    ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
               "initializing the engine."),
    ValueError("To serve at least one request with the model's max seq len (131072), (16.0 GiB KV cache is "
               "needed, which is larger than the available KV cache memory (4.2 GiB). Try increasing "
               "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."),
    RuntimeError("Not enough memory. Please try to increase --mem-fraction-static. Current value: "
                 "mem_fraction_static=0.05"),
    ValueError("Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static=0.5."),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
]


@pytest.mark.parametrize("e", OOM, ids=lambda e: str(e)[:40])
def test_out_of_memory_class_errors_are_oom_even_when_a_value_error(e):
    assert classify_start_error(e, tail="") == "engine_start_error.oom"


def test_the_log_tail_counts_and_other_errors_keep_their_class():
    core = RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")
    assert classify_start_error(core, tail="") == "engine_start_error"
    tail = ("ValueError: Free memory on device cuda:0 (1/80 GiB) on startup is less than desired GPU memory "
            "utilization (0.9, 72 GiB).")
    assert classify_start_error(core, tail=tail) == "engine_start_error.oom"  # the cause is in the engine's log
    assert classify_start_error(TypeError("unexpected keyword argument 'max_num_seq'"), tail="") == \
        "engine_start_error.bad_argument"
    assert classify_start_error(OSError("models/x does not appear to have a file named config.json"),
                                tail="") == "engine_start_error.missing_model"
