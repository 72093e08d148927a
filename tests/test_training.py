"""What the suite's trainers share: quiet logging that keeps every logged number."""

import torch
from datasets import Dataset
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer, TrainingArguments

from rlhf.training import BarOnly, train_resuming, trainer_arguments


def test_training_prints_no_per_step_dicts_but_keeps_the_log(tmp_path, capfd):
    config = GPTNeoXConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                           max_position_embeddings=8)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPTNeoXForCausalLM(config)
    ids = torch.randint(0, 20, (16, 8), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    args = TrainingArguments(**trainer_arguments(tmp_path / "checkpoints", seed=0, logging_steps=1, save_steps=None),
                             max_steps=4, per_device_train_batch_size=4)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    assert train_resuming(trainer, tmp_path / "checkpoints") is False
    out, err = capfd.readouterr()
    assert "'loss'" not in out + err and "{'" not in out + err  # no dict per logging step
    assert sum("loss" in h for h in trainer.state.log_history) == 4  # every number is still logged
    assert any(isinstance(c, BarOnly) for c in trainer.callback_handler.callbacks)


def test_activation_checkpointing_is_off_unless_asked_for(tmp_path):
    """TRL's configs default it to on; on the demo's models it only costs time (a recomputed forward)."""
    from trl import GRPOConfig, RewardConfig

    for config_cls in (RewardConfig, GRPOConfig):
        default = config_cls(**trainer_arguments(tmp_path, seed=0, logging_steps=1, save_steps=None))
        asked = config_cls(**trainer_arguments(tmp_path, seed=0, logging_steps=1, save_steps=None,
                                               gradient_checkpointing=True))
        assert (default.activation_checkpointing, asked.activation_checkpointing) == (False, True)
