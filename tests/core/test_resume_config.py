"""Resume refuses, before any actor starts, a config that changed in keys that break resume, and a
trainer.resume PATH that is no complete checkpoint."""

import pytest


def _fake_checkpoint(out, cfg_dict, iteration=2):
    from ascl_ray.checkpoint import config_digest, resume_keys, save_trainer_state, write_checkpoint

    def write(tmp):
        save_trainer_state(tmp, {"iteration": iteration, "sampler": {}, "estimator_state": {}, "wandb_id": None,
                                 "failures": 0, "config_digest": config_digest(cfg_dict),
                                 "resume_keys": resume_keys(cfg_dict)})

    return write_checkpoint(out, iteration, write, keep=2)


def test_changed_batch_shape_is_named_before_any_actor(tiny_model_path, tmp_path):
    import ray

    from ascl_ray.cli import compose
    from ascl_ray.config import to_dict
    from ascl_ray.driver import Trainer

    base = [f"model.path={tiny_model_path}", f"trainer.out_dir={tmp_path}", "tracking.wandb_mode=disabled"]
    _fake_checkpoint(tmp_path, to_dict(compose(base)))
    tr = Trainer(compose(base + ["rollout.n_samples=4", "learner.num_actors=1"]))
    with pytest.raises(ValueError) as e:
        tr.setup()
    msg = str(e.value)
    assert msg.startswith("trainer.resume:") and "rollout.n_samples" in msg and "learner.num_actors" in msg
    assert "data.prompts_per_iter" not in msg
    assert not ray.is_initialized()
    # never: the same folder starts fresh (nothing is checked)
    from ascl_ray.checkpoint import resolve_resume

    assert resolve_resume("never", tmp_path) is None


def test_resume_path_must_be_a_complete_checkpoint(tiny_model_path, tmp_path):
    from ascl_ray.cli import compose
    from ascl_ray.driver import Trainer

    (tmp_path / "half").mkdir()
    tr = Trainer(compose([f"model.path={tiny_model_path}", f"trainer.out_dir={tmp_path / 'run'}",
                          f"trainer.resume={tmp_path / 'half'}", "tracking.wandb_mode=disabled"]))
    with pytest.raises(FileNotFoundError, match="^trainer.resume:"):
        tr.setup()
