import pytest

from ascl_ray.cli import compose, main
from ascl_ray.config import ConfigError, TrainConfig


def test_default_composes_and_validates():
    cfg = compose([])
    assert isinstance(cfg, TrainConfig)
    assert cfg.algorithm.name == "ifpo" and cfg.method.name == "ascl" and cfg.learner.num_actors == 2
    assert cfg.method.prompt_style == "short"  # interpolated from model/tiny.yaml


@pytest.mark.parametrize("group,option,key,value", [
    ("algorithm", "grpo", "algorithm.name", "grpo"),
    ("algorithm", "dr_grpo", "algorithm.loss_agg", "seq-mean-token-sum"),
    ("algorithm", "rloo", "algorithm.name", "rloo"),
    ("method", "cada", "method.name", "cada"),
    ("method", "plain", "method.max_tool_calls", 0),
    ("model", "smollm2_135m", "model.prompt_style", "full"),
    ("learner", "zero3_gpu", "learner.backend", "nccl"),
    ("learner", "cpu_single", "learner.zero_stage", 0),
    ("learner", "cpu_single", "learner.num_actors", 1),
    ("learner", "cpu_single", "learner.torch_threads", 0),
    ("learner", "cpu_single", "learner.backend", "gloo"),
])
def test_groups_switch(group, option, key, value):
    cfg = compose([f"{group}={option}"])
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    assert obj == value


@pytest.mark.parametrize("override,key", [
    ("rollout.n_samples=0", "rollout.n_samples"),
    ("rollout.temperature=-1", "rollout.temperature"),
    ("learner.lr=0", "learner.lr"),
    ("method.name=magic", "method.name"),
    ("algorithm.loss_agg=sum", "algorithm.loss_agg"),
    ("trainer.sync_channel=pigeon", "trainer.sync_channel"),
    ("rollout.max_new_tokens=4096", "rollout.max_new_tokens"),
    ("data.prompts_per_iter=0", "data.prompts_per_iter"),
    ("rollout.n_samples=abc", "rollout.n_samples"),
    ("learner.num_actors=two", "learner.num_actors"),
    ("rollout.block_size=20", "rollout.block_size"),
    ("rollout.block_size=0", "rollout.block_size"),
    ("rollout.gpu_memory_utilization=1.5", "rollout.gpu_memory_utilization"),
    ("rollout.gpu_memory_utilization=0", "rollout.gpu_memory_utilization"),
    ("learner.zero_stage=4", "learner.zero_stage"),
    ("learner.torch_threads=-1", "learner.torch_threads"),
    ("rollout.torch_threads=-1", "rollout.torch_threads"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        compose([override])
    assert key in str(e.value)


def test_rollout_block_size_presets():
    assert compose([]).rollout.block_size == 32                      # CPU preset
    assert compose(["rollout=vllm_gpu"]).rollout.block_size is None  # vLLM's own default
    assert compose(["rollout.block_size=null"]).rollout.block_size is None
    assert compose([]).rollout.continuous_batching is True


def test_rollout_in_process_presets_and_tp():
    assert compose([]).rollout.in_process is True                    # CPU preset: no vLLM spawns
    assert compose(["rollout=vllm_gpu"]).rollout.in_process is False  # GPU: vLLM's engine-core process
    with pytest.raises(ConfigError, match="rollout.in_process"):
        compose(["rollout.tensor_parallel_size=2", "rollout.num_gpus_per_worker=2", "trainer.sync_channel=object_store"])
    cfg = compose(["rollout=vllm_gpu", "rollout.tensor_parallel_size=2", "rollout.num_gpus_per_worker=2",
                   "trainer.sync_channel=object_store"])
    assert cfg.rollout.tensor_parallel_size == 2


def test_unknown_key_and_group_rejected():
    with pytest.raises(ConfigError, match="learner.nope|nope"):
        compose(["learner.nope=1"])
    with pytest.raises(ConfigError, match="algorithm"):
        compose(["algorithm=does_not_exist"])


def test_cli_help_and_bad_override(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "algorithm" in out and "ifpo" in out and "grpo" in out
    assert main(["train", "rollout.top_p=2"]) == 2
    assert "rollout.top_p" in capsys.readouterr().err


def test_missing_model_path_fails_fast(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    code = main(["train", f"model.path={missing}", "model.build_tiny=false", f"trainer.out_dir={tmp_path / 'run'}"])
    assert code == 2
    assert "model.path" in capsys.readouterr().err
    assert not (tmp_path / "run" / "final").exists()


def test_bad_dataset_row_fails_fast(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt_id": "a", "text": "What is 1 + 1?", "prompt_type": "math", "reference": "#### 2"}\n'
                    '{"prompt_id": "b", "text": "hi", "prompt_type": "weird"}\n')
    code = main(["train", "data.source=jsonl", f"data.path={data}", f"trainer.out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and f"{data}:2" in err and "prompt_type" in err
    assert not (tmp_path / "run").exists()


def test_batch_must_split_over_learner_ranks():
    with pytest.raises(ConfigError, match="data.prompts_per_iter.*learner.num_actors"):
        compose(["data.prompts_per_iter=3", "rollout.n_samples=3"])


@pytest.mark.parametrize("micro,expected", [(18, 1), (16, 2), (9, 2), (4, 5), (1, 18), (100, 1)])
def test_grad_accum_is_ceil_so_micro_batches_never_exceed_the_size(micro, expected):
    # batch: 9 prompts x 8 samples over 2 ranks x 2 mini-batches = 18 rows per rank per step
    cfg = compose([f"learner.micro_batch_size={micro}", "data.prompts_per_iter=9"])
    assert cfg.data.prompts_per_iter * cfg.rollout.n_samples == 72
    assert cfg.grad_accum == expected
    assert -(-18 // expected) <= min(micro, 18)


def test_data_types_filters_the_prompts_and_names_unknown_types(tmp_path):
    from ascl_ray.data.synthetic import synthetic_prompts, write_jsonl
    from ascl_ray.runtime import load_prompts

    path = tmp_path / "p.jsonl"
    write_jsonl(synthetic_prompts(n_math=8), str(path))
    train, ev = load_prompts(compose(["data.source=jsonl", f"data.path={path}", "data.types=[benign_sensitive]"]))
    assert train and {r.prompt_type for r in train + ev} == {"benign_sensitive"}
    every, _ = load_prompts(compose(["data.source=jsonl", f"data.path={path}"]))
    assert {r.prompt_type for r in every} > {"benign_sensitive"}
    with pytest.raises(ConfigError, match="data.types"):
        compose(["data.types=[benign, math]"])
    with pytest.raises(ValueError, match="no prompt of these types"):
        write_jsonl([r for r in synthetic_prompts(n_math=4) if r.prompt_type == "math"], str(path))
        load_prompts(compose(["data.source=jsonl", f"data.path={path}", "data.types=[harmful]"]))


def test_zero_stage_default_and_offload_needs_partitioning():
    assert compose([]).learner.zero_stage == 3
    with pytest.raises(ConfigError, match="learner.offload_optimizer"):
        compose(["learner.zero_stage=0", "learner.offload_optimizer=true"])
    assert compose(["learner.zero_stage=2", "learner.offload_optimizer=true"]).learner.offload_optimizer


def test_ds_config_follows_the_stage():
    from ascl_ray.learner.policy import ds_config

    z3 = ds_config(compose([]).learner, world_size=2, grad_accum=2)["zero_optimization"]
    z0 = ds_config(compose(["learner=cpu_single"]).learner, world_size=1, grad_accum=2)["zero_optimization"]
    assert z3["stage"] == 3 and "stage3_param_persistence_threshold" in z3
    assert z0["stage"] == 0 and not any(k.startswith("stage3") for k in z0)


def test_cpu_has_bf16_reads_the_flags(tmp_path):
    from ascl_ray.resources import cpu_has_bf16

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu avx avx2 avx512f\n")
    assert not cpu_has_bf16(str(f))
    f.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16(str(f))
    assert not cpu_has_bf16(str(tmp_path / "absent"))
