"""Several processes: sharding, and two gloo processes matching one process on the same batch."""

import dataclasses
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cagnet import distributed
from cagnet.checkpoint import load_checkpoint
from cagnet.config import Config, get_preset
from cagnet.errors import ConfigError


def test_shard_splits_a_batch_evenly_and_in_order():
    batch = [10, 11, 12, 13, 14, 15]
    parts = [distributed.shard(batch, r, 3) for r in range(3)]
    assert parts == [[10, 11], [12, 13], [14, 15]]
    with pytest.raises(ConfigError, match="divisible"):
        distributed.shard(batch, 0, 4)


def test_single_process_defaults():
    info = distributed.current()
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (0, 1, False, True)
    t = torch.ones(2)
    assert torch.equal(distributed.all_reduce_sum(t), torch.ones(2))


class Blocks(torch.utils.data.Dataset):
    """Deterministic images of coloured blocks; every pixel labelled with a seen toy class."""

    def __init__(self, n: int, seen: list[int], size: int = 32) -> None:
        self.n, self.seen, self.size = n, seen, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        s = self.size
        label = torch.full((s, s), self.seen[i % len(self.seen)], dtype=torch.long)
        other = self.seen[(i + 1) % len(self.seen)]
        r, c = torch.randint(0, s // 2, (2,), generator=g).tolist()
        label[r:r + s // 2, c:c + s // 2] = other
        image = torch.randn(3, s, s, generator=g) * 0.3 + label.float() / len(self.seen)
        return image, label


def _config() -> Config:
    # seen-only, no dropout and frozen BatchNorm (DeepLabv2): nothing random but the data,
    # so two processes with half batches must follow one process with the whole batch
    cfg = get_preset("toy").replace(method="seen-only")
    # (the paper presets' SGD and ASPP multipliers for the backbone: Adam's steps barely
    # change when the gradients are summed instead of averaged, SGD's double)
    model = dataclasses.replace(cfg.model, backbone="deeplabv2", multiscale=(1.0,),
                                disc_dropout=0.0, feature_norm=False)
    train = dataclasses.replace(cfg.train, iters=3, batch_size=4, lr=1e-3, lr_d=1e-3,
                                backbone_optimizer="sgd", lr_mult_aspp_weight=10.0,
                                lr_mult_aspp_bias=20.0, log_every=1, checkpoint_every=1000)
    return cfg.replace(model=model, train=train)


def _datasets(cfg: Config):
    from cagnet.data import class_split

    seen = list(class_split(cfg.data).seen)
    return Blocks(16, seen), Blocks(6, seen)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from cagnet.train import fit

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = _config()
        train_set, test_set = _datasets(cfg)
        fit(cfg, out, device="cpu", train_set=train_set, test_set=test_set, progress=False)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from cagnet.train import fit

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    cfg = _config()
    train_set, test_set = _datasets(cfg)
    single = fit(cfg, tmp_path / "one", device="cpu", train_set=train_set, test_set=test_set,
                 progress=False)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model"]
    one = single.model.state_dict()
    # float32 gradients are summed in another order across two processes. Adam moves a
    # weight by up to ~lr a step whatever the gradient's size, so a coordinate whose
    # gradient is zero up to rounding may step either way: allow a few such coordinates
    # (< 1%), each off by at most iters * lr. Summed instead of averaged gradients put far
    # more than 1% of the SGD-trained backbone's weights off.
    adam_step = cfg.train.iters * max(cfg.train.lr_d, cfg.train.lr_g)
    for k, v in one.items():
        if not v.numel():
            continue
        a, b = ddp[k].float(), v.float()
        off = (a - b).abs() > 1e-5 + 1e-3 * b.abs()
        assert off.float().mean() < 0.01, f"{k}: {int(off.sum())} differ"
        if off.any():
            assert (a - b).abs().max() <= 1.01 * adam_step, f"{k}: {(a - b).abs().max()}"
    # the three steps moved the weights far more than that tolerance
    untrained = dataclasses.replace(cfg.train, iters=0)
    init = fit(cfg.replace(train=untrained), None, device="cpu", train_set=train_set,
               progress=False, evaluate=False).model.state_dict()
    head = "backbone.aspp.branches.0.weight"
    assert (one[head] - init[head]).abs().max() > 1e-3

    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    # the few coordinates Adam moved apart may flip a handful of the 6 x 32 x 32 pixels
    for key in ("pixel_acc", "miou", "miou_seen"):
        assert m_ddp[key] == pytest.approx(m_one[key], abs=1e-3)
