"""Structured (dataclass) schema of the training configuration.

Every YAML file under ``conf/`` is merged onto these dataclasses, so an unknown key or a value of the
wrong type fails at composition time; the rules that types cannot express live in
:mod:`trainer.config.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trainer.model.whisper_config import WhisperFeaturesConfig
from trainer.optim.config import OptimConfig

COMPONENT_SOURCES = ("random", "diffusers", "single_file")


@dataclass
class LTXTransformerArch:
    """Architecture of the LTX-Video DiT; the fields are ``LTXVideoTransformer3DModel`` arguments.

    The 13B model of LTX-Video 0.9.7 is 48 blocks of 32 heads x 128 channels (hidden 4096) with
    4096 caption channels; the 2B model is 28 blocks of 32 x 64 with 2048 cross-attention channels.
    """

    in_channels: int = 128  # latent channels of the VAE
    out_channels: int = 128  # latent channels the DiT predicts (= in_channels)
    patch_size: int = 1  # spatial patch of the patchify projection (LTX uses 1: the VAE already compresses)
    patch_size_t: int = 1  # temporal patch of the patchify projection (LTX uses 1)
    num_attention_heads: int = 32  # attention heads per block
    attention_head_dim: int = 128  # channels per head; hidden size = heads x head dim
    cross_attention_dim: int = 4096  # width of the text cross-attention keys/values
    num_layers: int = 48  # transformer blocks (48 in the 13B model)
    caption_channels: int = 4096  # width of the text encoder output (T5-XXL)
    activation_fn: str = "gelu-approximate"  # FFN activation (diffusers name)
    qk_norm: str = "rms_norm_across_heads"  # query/key normalisation of self-attention (diffusers name)
    norm_elementwise_affine: bool = False  # learned scale/shift in the block norms
    norm_eps: float = 1e-6  # epsilon of the block norms
    attention_bias: bool = True  # biases on the q/k/v projections
    attention_out_bias: bool = True  # bias on the attention output projection

    @property
    def inner_dim(self) -> int:
        """Hidden width of the DiT (heads x head dim)."""
        return self.num_attention_heads * self.attention_head_dim


@dataclass
class TransformerConfig:
    """Where the DiT weights come from.

    ``source``: ``diffusers`` (a diffusers folder; ``subfolder`` inside it), ``single_file`` (an LTX
    single-file ``.safetensors`` checkpoint, converted with diffusers' converter and checked against
    ``arch``) or ``random`` (an explicit random initialisation from ``arch``, for tiny test models only).
    """

    source: str = "diffusers"  # diffusers (a folder), single_file (an LTX .safetensors) or random (tests only)
    path: str | None = None  # diffusers folder or single file; the ltxv_* models read TALKDIT_LTX_PATH
    subfolder: str | None = "transformer"  # the DiT's folder inside a diffusers folder
    arch: LTXTransformerArch = field(default_factory=LTXTransformerArch)
    init_seed: int = 0  # seed of the random initialisation when source=random


@dataclass
class VAEConfig:
    """Where the LTX Video-VAE comes from (always frozen).

    ``arch`` holds ``AutoencoderKLLTXVideo`` keyword arguments: the whole architecture for
    ``source=random``, and for ``single_file`` the architecture the checkpoint's VAE keys are loaded
    into; a diffusers folder carries its own ``config.json`` and ignores it.
    """

    source: str = "diffusers"  # diffusers, single_file or random (tests only)
    path: str | None = None  # diffusers folder or single file holding the VAE
    subfolder: str | None = "vae"  # the VAE's folder inside a diffusers folder
    arch: dict[str, Any] = field(default_factory=dict)  # AutoencoderKLLTXVideo arguments (random / single_file sources)
    init_seed: int = 0  # seed of the random initialisation when source=random
    spatial_compression: int = 32  # pixels per latent token side
    temporal_compression: int = 8  # video frames per latent frame after frame 0


@dataclass
class TextEncoderConfig:
    """The frozen T5 text encoder that turns captions into the DiT's cross-attention context.

    ``source=diffusers`` loads ``subfolder`` and ``tokenizer_subfolder`` of ``path`` with transformers;
    ``source=random`` builds a T5 encoder from ``arch`` (``T5Config`` arguments) with a byte-level
    tokenizer that needs no vocabulary file — for tiny test models only.
    """

    source: str = "diffusers"  # diffusers or random (tests only)
    path: str | None = None  # diffusers folder holding the T5 text encoder and tokenizer
    subfolder: str | None = "text_encoder"  # the text encoder's folder inside a diffusers folder
    tokenizer_subfolder: str | None = "tokenizer"  # the tokenizer's folder inside a diffusers folder
    arch: dict[str, Any] = field(default_factory=dict)  # T5Config arguments of the random encoder (source=random)
    init_seed: int = 0  # seed of the random initialisation when source=random
    max_length: int = 128  # LTX-Video pads/truncates prompts to 128 tokens
    cache_size: int = 1024  # captions whose embeddings are kept (the encoder is frozen)


@dataclass
class ModelConfig:
    """The pretrained pieces: DiT, VAE and text encoder, plus memory switches."""

    name: str = MISSING  # the model config's name (the option of the model group)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    gradient_checkpointing: bool = False  # recompute block activations in the backward pass (saves memory)


@dataclass
class AudioConfig:
    """Audio features (as stored in shards) and the audio adapter built on them (paper §3.2).

    ``feature_layers`` x ``feature_dim`` is the per-frame feature shape ``B x C`` (Whisper-small:
    13 x 768 at 50 Hz). ``window`` is W of Eq. 3. ``adapter_dim`` is the width of the audio tokens the
    Audio Projection emits and the audio cross-attention reads as keys/values; for the 13B DiT,
    1024 gives an adapter of about 2B parameters as in the paper.
    """

    name: str = MISSING  # the audio config's name (the option of the audio group)
    feature_layers: int = 13  # B: stacked Whisper hidden states per frame (13 for Whisper-small)
    feature_dim: int = 768  # C: width of each hidden state (768 for Whisper-small)
    feature_rate: float = 50.0  # feature frames per second (Whisper: 50 Hz)
    window: int = 9  # W of Eq. 3: audio feature frames around each video frame
    adapter_dim: int = 1024  # width of the audio tokens the adapter's cross-attention reads
    encoder: WhisperFeaturesConfig = field(default_factory=WhisperFeaturesConfig)


@dataclass
class LoRAConfig:
    """LoRA on the DiT's linear layers through peft (stage 2)."""

    enabled: bool = False  # inject LoRA adapters into the DiT (stage 2)
    rank: int = 128  # LoRA rank (128 in the paper)
    alpha: float = 128.0  # scale = alpha / rank; equal values keep exported files unambiguous
    dropout: float = 0.0  # dropout on the LoRA input
    # Full-name regex (peft semantics) of the DiT linears that get adapters; the audio adapter is
    # trained in full and is excluded by construction.
    target_modules: str = (
        r"transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)"
        r"|transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)"
    )


@dataclass
class StageConfig:
    """What a training stage trains and how often each condition is on (paper Table 1).

    ``p_*`` are probabilities that a condition is ON: audio, first frame (``ff``), video-to-video
    masking (``v2v``), identity reference tokens (``id``) and full-frame reference tokens (``frame_ref``).
    The ``base`` stage trains every DiT weight without an audio adapter (``audio_adapter=false``,
    ``train_transformer=true``): full fine-tuning of a pretrained DiT, and how talkdit fits its own tiny
    pretrained base.
    """

    name: str = MISSING  # the stage config's name (the option of the stage group)
    audio_adapter: bool = True  # attach the audio adapter; false trains and runs the plain DiT (p_audio must be 0)
    train_transformer: bool = False  # train every weight of the DiT (full fine-tuning)
    train_adapter: bool = True  # train the audio adapter (projection + cross-attention)
    adapter_init: str | None = None  # stage-1 export dir, audio_adapter.safetensors, or stage-1 checkpoint
    # A LoRA stage with an untrained adapter (AnyExpress stage I: audio module and DiT fine-tuned together); without
    # it a LoRA stage must start from a trained adapter (stage.adapter_init), the EditYourself order.
    fresh_adapter: bool = False
    # AnyExpress's module restore: when stage.adapter_init also holds LoRA weights (a joint stage before this one),
    # true starts this stage's LoRA at zero, the pretrained DiT (AnyExpress stage II); false continues those weights.
    restore_lora: bool = True
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    p_audio: float = 1.0  # probability the audio condition is on
    p_ff: float = 0.9  # probability the first frame is given clean
    p_v2v: float = 0.9  # probability of V2V masking (noise only inside the lower-face mask)
    p_id: float = 0.0  # probability identity reference tokens are prepended (per batch)
    # probability a batch trains a fully synthetic block with full-frame reference tokens (Eq. 7), the clip's first
    # and/or last latent frame standing for the clean neighbours the sampler gives such a block (per batch)
    p_frame_ref: float = 0.0
    # SayAnything's coupled masking (its appendix: audio off 5 %, reference off 15 %, audio off => reference off):
    # p_audio=0.95 p_ref_drop=0.15 ref_follows_audio=true. A dropped reference has its latents zeroed per sample.
    p_ref_drop: float = 0.0  # per-sample probability the identity references are zeroed
    ref_follows_audio: bool = False  # a sample without audio has its identity references zeroed too


@dataclass
class ObjectiveConfig:
    """Flow-matching objective settings (paper §3.2, §3.5, §4.1)."""

    timestep_loc: float = 2.05  # location of t = sigmoid(N(loc, scale)): ~92% of draws in [0.60, 0.98]
    timestep_scale: float = 1.0  # scale of t = sigmoid(N(loc, scale))
    knn_candidates: int = 4  # immiscible diffusion: noise candidates per sample (1 disables)
    contrastive_lambda: float = 0.05  # weight of the negative term of contrastive flow matching (0 disables)
    num_reference_frames: int = 6  # latent frames of identity references per sample


@dataclass
class DataConfig:
    """WebDataset shards in the schema of DESIGN §5 and how clips become equal-token batches.

    Each clip is resized at random to an area in ``[min_megapixels, max_megapixels]`` (aspect kept, sides
    multiples of 32, never upscaled beyond its stored size) and trimmed to ``8k+1`` frames so that every
    batch holds ``tokens_per_batch`` video tokens: exactly on the exact grid, at least ``1 − bucket_tolerance``
    of them in an aspect ladder's bucket (:mod:`trainer.data.buckets`). Aspects are strings ``"16:9"``: quote
    them in YAML, which reads an unquoted ``16:9`` as the number 969.
    """

    shards: str = MISSING  # brace pattern, glob or comma-separated list of .tar paths or URLs
    tokens_per_batch: int = 24576  # video tokens per batch (the paper: 4 x 121 frames at 512x768)
    min_megapixels: float = 0.25  # smallest area a clip is resized to
    max_megapixels: float = 2.0  # largest area a clip is resized to (never upscaled beyond its stored size)
    max_frames: int = 121  # longest clip in video frames: 8k+1
    # aspects (width:height) that get buckets on an area ladder beside the exact ones (trainer/data/buckets.py)
    bucket_aspects: list[str] = field(default_factory=lambda: ["16:9", "9:16", "4:3", "3:4", "1:1"])
    bucket_tolerance: float = 0.05  # share of tokens_per_batch an aspect bucket may leave empty
    num_workers: int = 4  # per rank; capped so that every worker has a shard
    shuffle_buffer: int = 64  # samples in the seeded shuffle buffer of each reader
    use_cached_latents: bool = True  # train from VAE latents stored in the shard when present
    default_caption: str = "a person talking to the camera"  # when a sample has no caption
    mask: str = "enclosing"  # V2V mask from lower-face boxes: "enclosing" or "adaptive" (SayAnything)
    mask_padding: float = 0.1  # adaptive mask: padding as a fraction of the box size
    mask_alpha: float = 0.75  # adaptive mask: x'_t = a x_t + (1 - a) x_(t+1) (SayAnything Eq. 6)
    max_skipped_fraction: float = 0.01  # stop when more of the samples seen were bad than this
    min_samples_before_skip_check: int = 200  # samples seen before max_skipped_fraction is enforced
    seed: int = 0  # seed of shard order, shuffling, resizing and cropping


@dataclass
class StrategyConfig:
    """Devices and distribution strategy handed to ``lightning.Trainer`` (built by :mod:`trainer.strategies`).

    ``kind``: ``ddp`` (replicated weights), ``fsdp`` (FSDP2 ``fully_shard`` per DiT block) or
    ``deepspeed`` (ZeRO stage ``zero_stage``; the GPU default; on CPU it runs through DeepSpeed's CPU
    accelerator over gloo, which the tests use); all three run on CPU and GPU. The
    DeepSpeed JSON is generated from the fields below (:func:`trainer.strategies.deepspeed_config`) and
    saved in the run directory; it never holds an optimizer, scheduler or gradient clipping: the two
    learning rates, their schedule and the AdamW-only clipping stay talkdit's.
    """

    name: str = MISSING  # the strategy config's name (the option of the strategy group)
    accelerator: str = "cpu"  # cpu or gpu
    devices: int = 1  # processes per node (one per GPU)
    num_nodes: int = 1  # machines in the job
    kind: str = "ddp"  # ddp, fsdp or deepspeed; single-process ddp runs use Lightning's "auto"
    process_group_backend: str | None = "gloo"  # gloo on CPU, nccl on GPU
    precision: str = "32-true"  # Lightning precision, e.g. 32-true or bf16-mixed
    find_unused_parameters: bool = False  # ddp only
    zero_stage: int = 2  # deepspeed: 2 shards gradients and optimizer state, 3 also the weights
    offload_optimizer: bool = False  # deepspeed: optimizer state and step on the CPU (ZeRO-Offload)
    offload_parameters: bool = False  # deepspeed stage 3: weights on the CPU between uses
    reduce_bucket_size: int = 500_000_000  # deepspeed: elements per gradient reduction bucket
    allgather_bucket_size: int = 500_000_000  # deepspeed stage 2: elements per weight all-gather bucket
    overlap_comm: bool = True  # deepspeed: overlap gradient reduction with the backward pass
    reshard_after_forward: bool = True  # fsdp: free gathered block weights after forward (re-gather in backward)


@dataclass
class ParallelConfig:
    """Sequence parallelism over the DiT's video + reference tokens (applied by :mod:`trainer.parallel`).

    ``mode``: ``none``, ``ulysses`` (all-to-all over heads; runs on CPU and GPU), ``ring`` (yunchang's ring
    attention; GPU) or ``hybrid`` (Ulysses within ``ulysses_degree`` ranks, ring across; GPU). ``size`` ranks
    form one sequence group that works on the same samples; data parallelism runs across the groups.
    """

    mode: str = "none"  # none, ulysses, ring or hybrid (the parallel group's options set it)
    size: int = 1  # ranks per sequence group (1: no sequence parallelism)
    ulysses_degree: int = 1  # hybrid only: size = ulysses_degree x ring degree


@dataclass
class LoggerConfig:
    """Experiment logger: ``csv`` or ``wandb`` (offline unless ``mode`` says otherwise)."""

    name: str = "csv"  # csv or wandb
    project: str = "talkdit"  # wandb project
    entity: str | None = None  # wandb entity (team or user); null: the account's default
    mode: str = "offline"  # wandb mode: offline (default), online or disabled
    tags: list[str] = field(default_factory=list)  # wandb tags of the run


@dataclass
class LoopConfig:
    """Length of the run and how often it logs and checkpoints."""

    max_steps: int = 1000  # optimizer steps of the run
    log_every_n_steps: int = 10  # steps between rows of the metrics log (the first and last step are always logged)
    checkpoint_every_n_steps: int = 500  # steps between periodic checkpoints (last.ckpt is also written at the end)
    keep_last_checkpoints: int = 2  # periodic checkpoints kept (older ones are deleted)
    accumulate_grad_batches: int = 1  # batches per optimizer step
    progress_bar: bool = True  # show progress: a bar on a terminal, one line per interval otherwise
    progress_every_n_steps: int = 50  # without a terminal: a progress line every this many steps
    progress_every_s: float = 60.0  # without a terminal: a progress line at least this often (seconds)
    deterministic: bool = False  # deterministic kernels (slower)
    # Edges of the flow-time bins of the logged training loss train/loss_t<lo>-<hi> (each bin [lo, hi); the mean
    # flow-matching loss of the rank's samples in the bin since the previous logged row).
    loss_t_bins: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])


@dataclass
class ValidationConfig:
    """Validation during training (:class:`eval.validation.ValidationCallback`, from ``callbacks``); off by default.

    Every ``every_n_steps`` optimizer steps all ranks stop at the same step boundary and, with the model in
    eval mode and without gradients: (1) compute the masked flow-matching loss (Eq. 8 without the
    contrastive term) of the first ``loss_batches`` training-layout batches of ``shards`` (read in file
    order, no shuffle) with every sample at ``t = q`` for each ``q`` in ``timestep_quantiles`` and the
    conditions of V2V inference (V2V on, first frame off, audio on, identity references as
    ``identity_refs``), logged as ``val/loss_t<q>`` and their mean ``val/loss``; (2) sample the first
    ``num_clips`` clips of ``shards`` with the Euler sampler in each of ``modes``, log the means of the
    metrics whose weights are present (``val/<metric>`` for ``modes[0]``, ``val/<mode>/<metric>`` for the
    others) and write ``<run_dir>/validation/step<N>/<clip>.mp4`` (``.../<mode>/<clip>.mp4`` for the modes
    after the first) with the driving audio; under wandb the videos are logged too.
    """

    every_n_steps: int = 0  # optimizer steps between validations; 0 turns validation off
    shards: str | None = None  # held-out shards (brace pattern, glob or list, like data.shards)
    num_clips: int = 2  # clips sampled per validation (the first ones of the shards); 0 skips sampling
    sample_steps: int = 8  # Euler steps per sample (40 in the paper; fewer keeps validation cheap)
    # Flow times of the held-out loss, each in (0, 1); the same noise is used at every t and every validation.
    timestep_quantiles: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    loss_batches: int = 2  # training-layout batches of the held-out loss; 0 skips the loss
    modes: list[str] = field(default_factory=lambda: ["v2v_self"])  # v2v_self, v2v_novel, i2v (eval.run's rows)
    v2v_mask: str = "lip"  # lip (as trained), face or head
    identity_refs: bool = True  # prepend the clips' face reference tokens (loss and samples)
    audio_guidance: float = 2.0  # classifier-free guidance scale of the audio (1 = one pass per step)
    text_guidance: float = 1.0  # classifier-free guidance scale of the caption (1 = off)
    seed: int = 0  # seed of the posterior samples and of the noise (fixed: validations are comparable)


@dataclass
class TrainConfig:
    """Root of ``conf/train.yaml``."""

    experiment_name: str = "default"  # names the run directory run_root/<experiment_name>/...
    seed: int = 0  # seed of model initialisation, noise and dropout draws
    run_root: str = "runs"  # run directories are created below this folder
    run_dir: str | None = None  # explicit run directory; default run_root/experiment_name/<timestamp>
    # A training checkpoint to continue from, or "auto": the run directory's last.ckpt when there is one
    # (what a requeued SLURM job, which reruns the same command in the same job-id folder, needs).
    resume: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # Lightning callbacks the runner adds, by name: {_target_: <import path>, <constructor arguments>} (Hydra
    # instantiate; conf/callbacks/default.yaml). A name set to null drops that callback.
    callbacks: dict[str, Any] = field(default_factory=dict)
