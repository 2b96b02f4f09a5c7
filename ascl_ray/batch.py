"""The record types that flow through one RL iteration.

    PromptRow --(rollout workers)--> Rollout --(reward pool)--> Rollout.reward
              --(advantage estimator)--> Rollout.advantage --(learners)--> TrainBatch

Plain dataclasses, no Ray/vLLM/DeepSpeed imports: they are pickled between actors.
Per-sample lists (``response_ids``, ``loss_mask``, ``rollout_logprobs``) all have the
length of the response, i.e. every token after the prompt, model and tool tokens alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


def prompt_types() -> tuple[str, ...]:
    """The prompt kinds: the names of the registered reward rules, in registration order (the built-ins
    first: harmful, benign_sensitive, math, gray_zone; then plug-in kinds). gray_zone [ours]: a request whose
    verdict (comply / refuse) is the deployment's current operator policy, drawn per episode by the
    environment and stated only in the rule tool's answer. The registry is imported lazily so this module
    stays low-level (the rules module is pure: no Ray / vLLM / DeepSpeed)."""
    from ascl_ray.registry import get_registry

    return tuple(get_registry("reward_rule").names_in_order())  # type: ignore[attr-defined]


@dataclass
class PromptRow:
    """One prompt of a dataset.

    prompt_id:   stable id of the row (file:row or synthetic id), unique within a dataset
    text:        the user request
    prompt_type: one of prompt_types() (the registered reward rules); selects the reward rule
    reference:   math: the reference answer (GSM8K ``... #### 72`` or a MATH answer); else None
    math_kind:   ``gsm8k`` | ``math`` for math rows, else None
    category:    optional safety category (ties into the rule store), else None; a gray_zone row names
                 its operator-set category (whose current policy decides the verdict)
    source:      dataset name, for per-source metrics
    needs_rules: ground truth: only an answer that read the rule tool can be right every time
                 (default: True for gray_zone rows, else False)
    """

    prompt_id: str
    text: str
    prompt_type: str
    reference: Optional[str] = None
    math_kind: Optional[str] = None
    category: Optional[str] = None
    source: str = "synthetic"
    needs_rules: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.needs_rules is None:
            self.needs_rules = self.prompt_type == "gray_zone"
        if self.prompt_type == "gray_zone" and not self.category:
            raise ValueError(f"PromptRow {self.prompt_id!r}: gray_zone row needs field 'category' "
                             "(its operator-set category)")
        kinds = prompt_types()
        if self.prompt_type not in kinds:
            raise ValueError(
                f"PromptRow {self.prompt_id!r}: prompt_type={self.prompt_type!r}, expected one of {kinds}"
            )
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"PromptRow {self.prompt_id!r}: field 'text' is empty")
        if self.prompt_type == "math" and not self.reference:
            raise ValueError(f"PromptRow {self.prompt_id!r}: math row needs field 'reference'")


@dataclass
class Rollout:
    """One sampled episode (possibly multi-turn with tool calls) for one prompt.

    group_id:         int; all G samples of one prompt in one iteration share it (explicit, never positional)
    prompt_ids:       [P] token ids of the rendered prompt (chat template applied)
    response_ids:     [R] every token after the prompt, exactly as the engine generated them, with
                      tool-response/template tokens spliced in between model segments
    loss_mask:        [R] 1 on model-generated tokens, 0 on tool/template tokens
    rollout_logprobs: [R] engine log-prob of each model token under the sampling policy; 0.0 where mask is 0
    final_text:       decoded model text after the last tool turn (what the judge scores)
    full_text:        decoded response including tool turns (for logs only)
    consulted/n_calls/categories/malformed_call/truncated: tool metadata (methods.md section 2)
    policy:           the episode's operator policy {category: comply|refuse} (drawn by the environment)
    reward / reward_info: set by the reward pool (reward_info['valid'] False when a scorer failed)
    advantage:        set by the advantage estimator (sequence-level, broadcast over model tokens)
    policy_version:   the learner version (updates taken) whose weights the engine sampled with; the
                      batch's staleness is the training version minus this (ascl_ray/overlap.py)
    """

    group_id: int
    prompt: PromptRow
    prompt_ids: list[int]
    response_ids: list[int]
    loss_mask: list[int]
    rollout_logprobs: list[float]
    final_text: str = ""
    full_text: str = ""
    consulted: bool = False
    n_calls: int = 0
    categories: list[str] = field(default_factory=list)
    malformed_call: bool = False
    truncated: bool = False
    policy: dict[str, str] = field(default_factory=dict)
    reward: Optional[float] = None
    reward_info: dict[str, Any] = field(default_factory=dict)
    advantage: Optional[float] = None
    policy_version: int = 0

    def check(self) -> None:
        n = len(self.response_ids)
        if len(self.loss_mask) != n or len(self.rollout_logprobs) != n:
            raise ValueError(
                f"Rollout group {self.group_id}: response_ids/loss_mask/rollout_logprobs lengths "
                f"{n}/{len(self.loss_mask)}/{len(self.rollout_logprobs)} differ"
            )

    @property
    def n_model_tokens(self) -> int:
        return int(sum(self.loss_mask))

    @property
    def expected_verdict(self) -> Optional[str]:
        """gray_zone: the verdict the episode's operator policy sets for the row's category, else None."""
        if self.prompt.prompt_type != "gray_zone":
            return None
        return self.policy.get(self.prompt.category or "")


@dataclass
class TrainBatch:
    """Padded tensors for the learner, built from a list of Rollouts (see ``collate``).

    input_ids:        [B, T] long, prompt + response, right-padded with pad_id
    attention_mask:   [B, T] long, 1 on real tokens
    loss_mask:        [B, T-1] float, 1 where target token t+1 is a model token of the response
    rollout_logprobs: [B, T-1] float, engine log-prob of target token t+1 (0 where loss_mask is 0)
    advantages:       [B] float, sequence advantage
    """

    input_ids: Any
    attention_mask: Any
    loss_mask: Any
    rollout_logprobs: Any
    advantages: Any

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def collate(rollouts: list[Rollout], pad_id: int) -> TrainBatch:
    """Pack rollouts into right-padded tensors aligned for next-token log-probs."""
    import torch

    if not rollouts:
        raise ValueError("collate: empty list of rollouts")
    for r in rollouts:
        r.check()
        if r.advantage is None:
            raise ValueError(f"collate: rollout of group {r.group_id} has no advantage")
    T = max(len(r.prompt_ids) + len(r.response_ids) for r in rollouts)
    B = len(rollouts)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T - 1), dtype=torch.float32)
    old_lp = torch.zeros((B, T - 1), dtype=torch.float32)
    for i, r in enumerate(rollouts):
        P, R = len(r.prompt_ids), len(r.response_ids)
        input_ids[i, : P + R] = torch.tensor(r.prompt_ids + r.response_ids, dtype=torch.long)
        attn[i, : P + R] = 1
        # position t predicts token t+1; response token j sits at P+j, predicted at P+j-1
        loss_mask[i, P - 1 : P - 1 + R] = torch.tensor(r.loss_mask, dtype=torch.float32)
        old_lp[i, P - 1 : P - 1 + R] = torch.tensor(r.rollout_logprobs, dtype=torch.float32)
    adv = torch.tensor([float(r.advantage) for r in rollouts], dtype=torch.float32)
    return TrainBatch(input_ids, attn, loss_mask, old_lp, adv)
