"""Typed configuration and the named presets.

One code path runs every scale; a preset only fills these dataclasses differently.
``get_preset("toy")`` is the CPU world the book runs on; ``voc``, ``context`` and
``cocostuff`` are the paper's settings (DeepLabv2-ResNet-101, 600-d embeddings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

METHODS = ("cagnet", "zs3net", "seen-only")


@dataclass(frozen=True)
class ModelConfig:
    """Network widths. ``embed_dim`` is both the feature width and the class-embedding width."""

    backbone: str = "deeplabv2"  # "deeplabv2" (ResNet-101) | "toy" (small CNN)
    embed_dim: int = 600  # d: ASPP output = word-embedding width
    # ImageNet weights for the ResNet-101 trunk (voc12.yaml `init_model`:
    # deeplabv2_resnet101_init.pth); `train --from-scratch` turns them off
    pretrained: bool = True
    weights: str | None = None  # a weights file to start from instead (state dict, by name)
    # weights of every conv of CM, G and D/C: "kaiming" (voc12.yaml `init: kaiming`,
    # trainer.py weights_init: kaiming_normal_ fan_in, biases 0) | "default" (PyTorch's)
    init: str = "kaiming"
    # Context Selector: "trained" (conv -> sigmoid, learned with CM) | "official"
    # (networks.py `fc_1`: conv -> ReLU -> sigmoid, so weights lie in [0.5, 1), and, its name
    # matching no group of trainer.py get_params, in no optimiser: it keeps its initial weights)
    selector: str = "trained"
    toy_width: int = 64  # channels of the toy backbone
    toy_stride: int = 2  # output stride of the toy backbone
    toy_refine: int = 0  # 3x3 blocks after the toy trunk merges its fine and coarse paths
    # BatchNorm on E's output (toy backbone only), before CM and the feature's sigmoid. The
    # official feature is sigmoid(ASPP output) (networks.py: h0 = torch.sigmoid(h + h_att));
    # a toy backbone trained from scratch with Adam drives 63-71% of the ASPP outputs beyond
    # +-4, where the sigmoid is flat (SGD: 4-9%; chapter 8); a deviation option, on in the
    # toy preset only (book/deviations.md)
    feature_norm: bool = False
    aspp_dilations: tuple[int, ...] = (6, 12, 18, 24)
    multiscale: tuple[float, ...] = (1.0, 0.75, 0.5)  # training scales; a max is added
    context_hidden: int = 256  # width of the three dilated convs of CM
    context_dilations: tuple[int, ...] = (1, 2, 5)
    logvar_relu: bool = True  # the official code puts a ReLU on log sigma^2 (so sigma >= 1)
    # Which of G's losses reach the contextual code z:
    # "none": G's input is detached (model.py: self.gen(self.sample.detach())), so z learns
    #   only through the residual attention and the KL (official);
    # "content": the content loss trains CM (not E) through z, as the reconstruction term of
    #   a conditional VAE whose encoder is CM: it reads a second fake, from CM run again on
    #   E(x) detached with the same noise draw (a deviation);
    # "all": every G loss reaches CM and E through z (a deviation).
    latent_grad: str = "none"
    # G reads each pixel's code minus the mean code of its class in the batch (a deviation,
    # off in the official code): the class reaches G through w only, so the code can hold
    # what varies within a class (the light of the stuff a thing lies on, its edges) but not
    # the class itself, and a seen pixel's code carries its context over to an unseen class
    code_centring: bool = False
    # the code G reads in the training step: "z", sampled mu + eps sigma (official), or "mu"
    # (a deviation: with sigma near 1 and a code that varies little within a class, the
    # noise hides the code from G, which then learns to ignore it)
    g_code: str = "z"
    # The patch-level CaGNet (CaGNetv2; its configs/voc12_pa3.yaml sets `patchsize: 3`, 1 is
    # CaGNet, pixel-wise): C reads a patch_size x patch_size neighbourhood (networks.py
    # Discriminator_ps3), and the fine-tuning's fake-feature steps tile their label maps with
    # patches of real layouts, one code per patch (model.py step2), C's CE counted at the
    # patches' centres only (losses.py ClsLoss, select=True); `cagnet.patches`
    patch_size: int = 1
    generator_hidden: tuple[int, ...] = (1024, 960, 864, 784, 720)
    # networks.py Generator; one rate per hidden layer, or a single rate for all
    generator_dropout: tuple[float, ...] = (0.1, 0.1, 0.3, 0.5, 0.5)
    disc_hidden: int = 1024
    disc_dropout: float = 0.5


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where it lives, which classes are unseen, and the augmentation."""

    dataset: str = "voc"  # "toy" | "voc" | "context" | "cocostuff"
    root: str | None = None  # data folder; None -> $CAGNET_DATA or the user cache
    split: str = "cagnet"  # named unseen split ("cagnet", "zs3-2", ..., "zs3-10")
    unseen: tuple[str, ...] | None = None  # explicit unseen class names override `split`
    crop: int = 368
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # toy world only
    image_size: int = 64
    num_train: int = 2000
    num_test: int = 400
    data_seed: int = 0
    toy_lighting: float = 0.0  # how strongly a thing takes the light of its stuff, in [0, 1]
    # under each stuff's light a paint shows another paint's colour (a fixed rotation per
    # stuff), so a thing's colour word can be read only together with its context
    toy_paint_shift: bool = False
    # P(an object's shape is its stuff's favourite), in [0, 1]; 0.25 = no co-occurrence
    toy_prior: float = 0.7
    # class embeddings: "official" (the official repository's precomputed fastText and
    # word2vec pickles, dataset/*/word_vectors/, tools.py get_embedding with `fastnvec`) |
    # "gensim" (built from word-vector files, for any class names)
    embeddings: str = "official"
    # gensim: word-vector sources concatenated in this order
    embedding_sources: tuple[str, ...] = ("fasttext", "word2vec")


@dataclass(frozen=True)
class LossConfig:
    """Loss kinds and weights (official defaults)."""

    gan: str = "l1"  # "l1" (official: |sigmoid - target|) | "bce" | "lsgan"
    content: str = "mmd"  # "mmd" (official, RBF kernels) | "l2" (the paper's text)
    mmd_sigmas: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0, 60.0)
    mmd_max_pixels: int | None = 1024  # per-class pixel cap of the MMD (cost ~ pixels^2)
    ce_upsample: bool = False  # real-feature CE on logits upsampled to the labels' size
    # Weights as in voc12.yaml (training) and voc12_finetune.yaml (fine-tuning); key names there.
    w_kl: float = 100.0  # E/CM: KL (lambda_B_KLD)
    # the KL weight ramps linearly from 0 to w_kl over the first kl_warmup iterations, the
    # usual cure for a VAE's posterior collapse (0: w_kl from the start, as in the official code)
    kl_warmup: int = 0
    kl_pixels: str = "labelled"  # KL averaged over "labelled" pixels (networks.py) | "all"
    w_ce_real_backbone: float = 0.5  # E/CM: CE on real features (lambda_B_cls)
    w_ce_real: float = 1.0  # D/C, training: CE on real features (lambda_D_cls_real)
    w_ce_fake_train: float = 0.0  # D/C, training: CE on fakes (lambda_D_cls_fake)
    # fine-tuning, real-image blocks (step1 with update_back f)
    w_ce_real_finetune: float = 0.75  # D/C: CE on real features (_finetune lambda_D_cls_real)
    # D/C: CE on fakes from the pixels' own codes (lambda_D_cls_fake)
    w_ce_fake_finetune: float = 0.25
    # fine-tuning, fake-feature blocks (step2): random label maps, z ~ N(0, I)
    # D/C: CE on fakes, the only D/C loss there (lambda_D_cls_fake_transfer)
    w_ce_fake_transfer: float = 0.125
    w_ce_fake_g_transfer: float = 0.0  # G: CE on its fakes (lambda_G_cls_transfer); 0: G rests
    w_gan_g: float = 1.0  # G: adversarial (lambda_G_GAN)
    w_content: float = 50.0  # G: content, MMD or L2 (lambda_G_Content)
    w_ce_fake_g: float = 0.0  # G, real-image steps: CE on its fakes (lambda_G_cls)
    # CM: keep the pixel's class out of the code. A linear probe Q learns to read the class
    # from mu (trained with D/C); CM, run on E(x) detached, is pushed to make Q's guess
    # uniform, with this weight (0: off, as in the official code; a deviation)
    w_code_adv: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """The alternating schedule and the optimisers."""

    iters: int = 40_000  # training stage
    finetune_iters: int = 6_000  # fine-tuning stage
    switch_every: int = 100  # fine-tuning alternates train-step / fine-tune-step blocks
    # fake label maps draw unseen classes with weight 1 + gen_unseen_rate (9)
    unseen_weight: float = 10.0
    batch_size: int = 8
    lr: float = 2.5e-4  # backbone SGD
    # "sgd": the official SGD with momentum for E and CM (trainer.py back_opt "sgd") |
    # "adam": Adam (default betas, no weight decay) on the same groups and poly schedule, for
    # a backbone trained from scratch (the toy preset; results page)
    backbone_optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_mult_context: float = 5.0
    lr_mult_aspp_weight: float = 10.0
    lr_mult_aspp_bias: float = 20.0
    poly_power: float = 0.9
    lr_d: float = 2.5e-4  # Adam, discriminator/classifier (dis_opt lr)
    lr_g: float = 2e-4  # Adam, generator (gen_opt lr)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # trainer.py: torch.optim.Adam's defaults
    weight_decay_d: float = 5e-4  # dis_opt weight_decay
    weight_decay_g: float = 0.0  # gen_opt weight_decay
    # Adam rates x gamma every `every` iterations from `start` (dis_scheduler / gen_scheduler,
    # lr_policy lambda: gamma ** ((t - start) // every + 1) once t >= start): (start, every, gamma)
    lr_decay_d: tuple[float, float, float] = (10_000, 5_000, 0.71)
    lr_decay_g: tuple[float, float, float] = (10_000, 5_000, 0.71)
    # fine-tuning: fresh Adam optimisers for D/C and G (dis_opt / gen_opt lr_transfer),
    # their own step decay counted from the start of fine-tuning (*_finetune.yaml schedulers)
    lr_d_finetune: float = 5e-5
    lr_g_finetune: float = 5e-5
    finetune_decay_d: tuple[float, float, float] = (3_000, 1_000, 0.1)
    finetune_decay_g: tuple[float, float, float] = (3_000, 1_000, 0.1)
    # self-training: a pixel is pseudo-labelled with the best unseen class among its top_p
    # scores. configs_st_voc.yaml top_p: 1, the file the official `--schedule st` run reads
    # (voc12.yaml's top_p: 10 is read by no schedule)
    top_p: int = 1
    # Self-training after fine-tuning (`cagnet.selftrain`; ZS3Net's "+ST", train.py schedules
    # 'st' then 'st_mixed'): "self-train" (every network learns, ignored pixels pseudo-labelled
    # from top_p), then "self-train-finetune" (a second fine-tuning stage). Off: two stages.
    self_train: bool = False
    st_iters: int = 10_000  # configs_st_voc.yaml ITER_MAX_ST
    st_finetune_iters: int = 10_000  # configs_st_transfer_voc.yaml ITER_MAX_ST_TRANSFER
    # a fresh backbone optimiser for E and CM, poly over st_iters (configs_st_voc.yaml
    # back_opt.lr_st)
    lr_st: float = 5e-5
    lr_d_st: float = 1e-4  # fresh Adam, D/C (configs_st_voc.yaml dis_opt.lr_st)
    lr_g_st: float = 5e-5  # fresh Adam, G (configs_st_voc.yaml gen_opt.lr_st)
    # configs_st_voc.yaml dis_scheduler / gen_scheduler, counted from the stage's start
    st_decay_d: tuple[float, float, float] = (5_000, 1_000, 0.3)
    st_decay_g: tuple[float, float, float] = (5_000, 1_000, 0.3)
    # fresh Adam again for the second fine-tuning (configs_st_transfer_voc.yaml dis_opt /
    # gen_opt lr_st_transfer)
    lr_d_st_finetune: float = 1e-4
    lr_g_st_finetune: float = 1e-4
    # configs_st_transfer_voc.yaml dis_scheduler / gen_scheduler
    st_finetune_decay_d: tuple[float, float, float] = (5_000, 2_500, 0.5)
    st_finetune_decay_g: tuple[float, float, float] = (5_000, 2_500, 0.5)
    # CaGNet's codes in fake-feature steps: "prior" (z ~ N(0, I), model.py step2, official) |
    # "real" (codes of the last real batch's labelled pixels, drawn at random: fakes take
    # the contexts real pixels have, whether or not the KL made the codes look like N(0, I))
    fake_codes: str = "prior"
    # an ablation, off in every preset: in the real steps G reads the (centred) code of
    # another labelled pixel of the batch, drawn at random, instead of its own, so that no
    # code tells G the context of the pixel it regenerates
    shuffle_g_codes: bool = False
    fake_map_size: int | None = None  # side of random label maps; None -> feature-map size
    # an ablation, on in every run: with model.patch_size > 1 the fake-feature steps use patch
    # label maps (`cagnet.patches`, CaGNetv2); off, they use i.i.d. maps scored at every
    # pixel, so that only C's wider view differs from CaGNet
    patch_fakes: bool = True
    seed: int = 0
    num_workers: int = 4
    log_every: int = 20
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 1000
    amp: str = "auto"  # "auto" | "bf16" | "fp16" | "off"
    channels_last: bool = True
    compile: bool = False
    calibration: float = 0.0  # test-time constant subtracted from seen scores (SPNet)


@dataclass(frozen=True)
class Config:
    """Everything one run needs."""

    name: str
    method: str = "cagnet"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def replace(self, **changes: object) -> Config:
        """A copy with top-level fields changed, e.g. ``cfg.replace(method="zs3net")``."""
        if "method" in changes and changes["method"] not in METHODS:
            raise ValueError(f"unknown method {changes['method']!r}; choose one of {METHODS}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        def build(kind, values):
            kw = {}
            for f in dataclasses.fields(kind):
                if f.name in values:
                    v = values[f.name]
                    kw[f.name] = tuple(v) if isinstance(v, list) else v
            return kind(**kw)

        model = dict(d.get("model", {}))
        if "detach_latent" in model and "latent_grad" not in model:  # older configurations
            model["latent_grad"] = "none" if model["detach_latent"] else "all"
        return cls(
            name=d["name"],
            method=d.get("method", "cagnet"),
            model=build(ModelConfig, model),
            data=build(DataConfig, d.get("data", {})),
            loss=build(LossConfig, d.get("loss", {})),
            train=build(TrainConfig, d.get("train", {})),
        )


def _voc() -> Config:
    # configs/voc12.yaml and configs/voc12_finetune.yaml: the dataclass defaults
    return Config(name="voc", data=DataConfig(dataset="voc"))


def _context() -> Config:
    # configs/context.yaml and configs/context_finetune.yaml
    return Config(
        name="context",
        data=DataConfig(dataset="context"),
        train=TrainConfig(
            finetune_iters=10_000,  # context_finetune.yaml ITER_MAX_TRANSFER
            unseen_weight=15.0,  # 1 + gen_unseen_rate 14
            lr_decay_d=(10_000, 10_000, 0.3),  # context.yaml dis_scheduler
            lr_decay_g=(10_000, 10_000, 0.3),  # context.yaml gen_scheduler
            finetune_decay_d=(5_000, 1_000, 0.3),  # context_finetune.yaml dis_scheduler
            finetune_decay_g=(5_000, 1_000, 0.3),  # context_finetune.yaml gen_scheduler
            top_p=16,  # configs_st_context.yaml top_p (context.yaml's 17 is never read)
            # self-training: configs_st_context.yaml (ITER_MAX_ST, back_opt / dis_opt / gen_opt
            # lr_st, dis_scheduler / gen_scheduler) and configs_st_transfer_context.yaml
            st_iters=10_000,
            st_finetune_iters=10_000,  # ITER_MAX_ST_TRANSFER
            lr_st=2.5e-4,
            lr_d_st=2.5e-4,
            lr_g_st=2e-4,
            st_decay_d=(5_000, 1_000, 0.3),
            st_decay_g=(5_000, 1_000, 0.3),
            lr_d_st_finetune=1e-4,  # dis_opt lr_st_transfer
            lr_g_st_finetune=1e-4,  # gen_opt lr_st_transfer
            st_finetune_decay_d=(5_000, 2_500, 0.5),
            st_finetune_decay_g=(5_000, 2_500, 0.5),
        ),
    )


def _cocostuff() -> Config:
    # configs/cocostuff.yaml and configs/cocostuff_finetune.yaml
    return Config(
        name="cocostuff",
        data=DataConfig(dataset="cocostuff"),
        loss=LossConfig(
            w_ce_fake_transfer=1.0,  # cocostuff_finetune.yaml lambda_D_cls_fake_transfer
            w_ce_fake_g_transfer=1.0,  # cocostuff_finetune.yaml lambda_G_cls_transfer
        ),
        train=TrainConfig(
            iters=40_000,  # cocostuff.yaml ITER_MAX
            finetune_iters=6_000,  # cocostuff_finetune.yaml ITER_MAX_TRANSFER
            unseen_weight=60.0,  # 1 + gen_unseen_rate 59
            lr_d=5e-4,  # cocostuff.yaml dis_opt lr
            lr_decay_d=(10_000, 10_000, 0.3),  # cocostuff.yaml dis_scheduler
            lr_decay_g=(10_000, 5_000, 0.3),  # cocostuff.yaml gen_scheduler
            lr_d_finetune=1e-5,  # cocostuff_finetune.yaml dis_opt lr_transfer
            lr_g_finetune=1e-5,  # cocostuff_finetune.yaml gen_opt lr_transfer
            finetune_decay_d=(3_000, 2_000, 0.3),
            finetune_decay_g=(3_000, 2_000, 0.3),
            top_p=1,  # configs_st_coco.yaml top_p (cocostuff.yaml's 91 is never read)
            # self-training: configs_st_coco.yaml (ITER_MAX_ST, back_opt / dis_opt / gen_opt
            # lr_st, dis_scheduler / gen_scheduler) and configs_st_transfer_coco.yaml
            st_iters=10_000,
            st_finetune_iters=10_000,  # ITER_MAX_ST_TRANSFER
            lr_st=5e-5,
            lr_d_st=5e-5,
            lr_g_st=5e-5,
            st_decay_d=(5_000, 1_000, 0.3),
            st_decay_g=(5_000, 1_000, 0.3),
            lr_d_st_finetune=5e-5,  # dis_opt lr_st_transfer
            lr_g_st_finetune=5e-5,  # gen_opt lr_st_transfer
            st_finetune_decay_d=(3_000, 1_000, 0.5),
            st_finetune_decay_g=(3_000, 1_000, 0.5),
        ),
    )


def _toy() -> Config:
    # Small enough for a CPU: a 64x64 synthetic world, a small CNN and narrow heads. Losses,
    # fine-tuning blocks and optimisers are the official ones; where a value differs from
    # voc12.yaml / voc12_finetune.yaml, the comment says why.
    return Config(
        name="toy",
        model=ModelConfig(
            backbone="toy",
            embed_dim=64,
            pretrained=False,  # the toy trunk has no pretrained weights
            # PyTorch's initialisation instead of Kaiming's for CM, G and D/C: trained from
            # scratch with them, the toy model's seen mIoU after the training stage was .556
            # against .496 with Kaiming's (seed 0, one run each)
            init="default",
            toy_stride=4,  # 16x16 features: CM, G, D and the MMD cost ~1/4 of stride 2
            # two 3x3 blocks after the fine + coarse merge: without them a pixel's feature is
            # its 7-px neighbourhood plus an 8x-coarse map, too little to tell a square from
            # a cross; with them seen mIoU .57 -> .67, unseen .40 -> .51 (seeds 0, 1, measured
            # on the world without light and with the SGD backbone)
            toy_refine=2,
            # a BatchNorm on E's output before the sigmoid: with an Adam backbone from scratch
            # 63-71% of the ASPP output lies beyond +-4, where the sigmoid passes no gradient
            # (chapter 8); with it about 1% (book/deviations.md)
            feature_norm=True,
            multiscale=(1.0,),
            # CM's dilated convs 16 wide (voc12.yaml: 256 of 600 channels): CM ran twice in a
            # live-codes step (`StepLosses.cm_only`) and its 64-wide convs were a third of it;
            # 16 wide, with the MMD at 128 pixels and batch 12, a step took ~105 ms instead
            # of ~150 ms on 2 cores (benchmarks/step_time.py), and one whole toy command
            # 171-228 s (results page, lit world: the codes stay alive; hIoU 0.01-0.05 lower,
            # the live codes' lead over ZS3Net +0.047 and +0.028 instead of +0.065, +0.032)
            context_hidden=16,
            generator_hidden=(128, 128),  # two hidden layers instead of five: 64-d features
            generator_dropout=(0.2,),  # one rate for every layer
            disc_hidden=128,
            disc_dropout=0.2,
        ),
        data=DataConfig(
            dataset="toy",
            split="default",
            crop=64,
            scale_range=(1.0, 1.0),
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            embeddings="gensim",  # the toy world's own word vectors (no official pickles)
            # no light: with things taking the light of the stuff they lie on
            # (toy_lighting=1, one class looking different in each context) every method
            # scored lower and the live codes' lead over ZS3Net shrank (hIoU +0.047 / +0.028
            # against +0.051 / +0.036 without light, 3 seeds x 2 splits; half the light
            # +0.026 / +0.054): the features carry the context through the backbone's
            # 143-px view without it (results page, `lit-` and `half-light-` rows; chapter 1)
            toy_lighting=0.0,
            embedding_sources=("toy-a", "toy-b"),
        ),
        # The MMD reads at most 128 pixels per class (256 before; its cost grows as the square).
        # Stride 4 leaves objects 4-7 feature cells across: scoring the real-feature CE at
        # full resolution (ce_upsample) lifted seen mIoU .46 -> .52 at equal unseen mIoU.
        loss=LossConfig(mmd_max_pixels=128, ce_upsample=True, w_ce_fake_transfer=0.5),
        train=TrainConfig(
            iters=2000,  # the backbone still learns shapes at 1500; 2400 scored no better
            finetune_iters=800,
            switch_every=20,  # 100 of 6000 in voc12_finetune.yaml; 40 blocks here
            # 4 unseen among 20 classes: weight 10 made unseen classes ~70% of the fake
            # pixels and C over-predicted them; weight 3 (~40%) scored unseen .34 vs .28
            unseen_weight=3.0,
            # 12 images a step (16 before): a quarter less work per step for the 240 s budget
            # of one toy command, at the same number of Adam steps
            batch_size=12,
            # E and CM from scratch with Adam at 2e-3, no ASPP multipliers (the official
            # SGD with momentum, back_opt "sgd", at 3e-2 x10/x20 on the ASPP): with the
            # normalised features below, CaGNet with live codes .484 -> .529 hIoU (default
            # split) and ahead of ZS3Net in 6 of 6 runs against 2 of 3 with SGD (batch 16, lit
            # world: the results page's b16- rows; the preset: ahead in 6 of 6)
            backbone_optimizer="adam",
            lr=2e-3,
            lr_mult_aspp_weight=1.0,
            lr_mult_aspp_bias=1.0,
            # CM at 2e-3 x 0.2 = 4e-4 (the paper scale's 2.5e-4 x 5 = 1.25e-3 is SGD's rate):
            # with SGD at 3e-2 x 5 = 0.15 the fused ReLU of CM died within 20 iterations; with
            # Adam x1 one of CM's dilated layers kept 5% of its units active (seed 0), x0.05
            # left the live codes' mu spread at .07-.08, x0.2 spreads it .19-.32 with every
            # CM layer >= 12.7% active (results page, b16-live-centred; 3 seeds x 2 splits)
            lr_mult_context=0.2,
            lr_d=1e-3,
            lr_g=1e-3,
            # the official training schedule at the same fractions of the stage: Adam x0.71
            # every 1/8 of training from 1/4 (5k and 10k of 40k)
            lr_decay_d=(500, 250, 0.71),
            lr_decay_g=(500, 250, 0.71),
            # Fine-tuning has 400 fake-feature steps here, not 3000: at the official 1/5 of the
            # training rates, decayed from half-way, with CE weight 0.125, C hardly learnt the
            # unseen classes (unseen mIoU .02, CE on fakes still 2.0). Fresh Adam at the
            # training rates, x0.1 every 100 from 600, and weight 0.5 on the fakes: .30
            # (seed 0, from one training-stage checkpoint; chapter 7)
            lr_d_finetune=1e-3,
            lr_g_finetune=1e-3,
            finetune_decay_d=(600, 100, 0.1),
            finetune_decay_g=(600, 100, 0.1),
            # self-training scaled the same way from configs_st_voc.yaml and
            # configs_st_transfer_voc.yaml: 1/4 of training (10k vs 40k), then 10/6 of
            # fine-tuning (10k vs 6k); E, D, G at 1/5, 2/5, 1/4 of their training rates (5e-5,
            # 1e-4, 5e-5 vs 2.5e-4, 2.5e-4, 2e-4), x0.3 every 1/10 from 1/2; the second
            # fine-tuning at twice the fine-tuning rates (1e-4 vs 5e-5), x0.5 every 1/4 from 1/2
            st_iters=500,
            st_finetune_iters=1333,
            lr_st=4e-4,  # 1/5 of the training rate, as 5e-5 of 2.5e-4
            lr_d_st=4e-4,
            lr_g_st=2.5e-4,
            st_decay_d=(250, 50, 0.3),
            st_decay_g=(250, 50, 0.3),
            lr_d_st_finetune=4e-4,
            lr_g_st_finetune=4e-4,
            st_finetune_decay_d=(667, 333, 0.5),
            st_finetune_decay_g=(667, 333, 0.5),
            num_workers=0,
            log_every=20,
            checkpoint_every=250,
            amp="off",
            channels_last=False,
            # fine-tuning draws unseen classes 3x as often, so C is hardly biased towards
            # seen classes here: a small shift (best of -2..2 on one run) is enough
            calibration=0.5,
        ),
    )


PRESETS = {"toy": _toy, "voc": _voc, "context": _context, "cocostuff": _cocostuff}


def get_preset(name: str) -> Config:
    """Return a fresh `Config` for a named preset (``toy``, ``voc``, ``context``, ``cocostuff``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
