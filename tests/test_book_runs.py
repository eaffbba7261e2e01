"""`cagnet.book.toy_run`: the book's shared runs train once, then load; configs never mix."""

from small import small_toy

from cagnet.book import run_dir, toy_run
from cagnet.train import config_with


def _tiny():
    return small_toy(train=dict(iters=3, finetune_iters=2, switch_every=1, batch_size=4,
                                log_every=1, checkpoint_every=2),
                     data=dict(num_train=16, num_test=8), loss=dict(mmd_max_pixels=64))


def test_second_call_loads_the_finished_run_instead_of_training(monkeypatch):
    first = toy_run("cagnet", _tiny())
    folder = run_dir(_tiny().replace(method="cagnet"))
    assert (folder / "checkpoint.pt").exists()
    stamp = (folder / "checkpoint.pt").stat().st_mtime_ns
    second = toy_run("cagnet", _tiny())
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == stamp  # nothing retrained
    assert second.history == first.history
    assert second.metrics["miou_seen"] == first.metrics["miou_seen"]


def test_every_method_and_config_gets_its_own_folder():
    cfg = _tiny()
    folders = {run_dir(cfg.replace(method=m)) for m in ("cagnet", "zs3net", "seen-only")}
    folders.add(run_dir(config_with(cfg.replace(method="cagnet"), train=dict(seed=1))))
    assert len(folders) == 4


def test_a_changed_toy_world_gets_its_own_folder(monkeypatch):
    import cagnet.data.toy as toy

    before = run_dir(_tiny())
    monkeypatch.setattr(toy, "SIZE_RANGE", (toy.SIZE_RANGE[0], toy.SIZE_RANGE[1] + 1))
    assert run_dir(_tiny()) != before
