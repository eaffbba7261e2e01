"""`cagnet.book.toy_run`: the book's shared runs train once, then load; configs never mix."""

import importlib.util
from pathlib import Path

from small import small_toy

from cagnet.book import run_dir, toy_run
from cagnet.train import config_with

ROOT = Path(__file__).resolve().parents[1]


def _toy_results():
    """benchmarks/toy_results.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("toy_results",
                                                  ROOT / "benchmarks" / "toy_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_settings_added_later_keep_earlier_runs_folders_at_their_old_value():
    import dataclasses
    import hashlib
    import json

    from cagnet.book import LATER_SETTINGS, SELF_TRAINING_SETTINGS
    from cagnet.data.toy import world_constants

    old_values: dict[str, dict] = {}
    for (section, name), old in LATER_SETTINGS.items():
        old_values.setdefault(section, {})[name] = old
    cfg = config_with(_tiny(), **old_values)  # every later setting at its earlier value
    key = cfg.to_dict()
    for section, name in LATER_SETTINGS:
        del key[section][name]  # a configuration written before the setting existed
    key["toy_world"] = world_constants()
    legacy = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    for name in SELF_TRAINING_SETTINGS:  # not read without self-training
        del key["train"][name]
    key = json.loads(json.dumps(key), parse_int=float)  # numbers by value
    old = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    assert run_dir(cfg).name.endswith(old)
    assert legacy != old
    centred = cfg.replace(model=dataclasses.replace(cfg.model, code_centring=True))
    assert run_dir(centred) != run_dir(cfg)  # a new value is a new run


def test_a_folder_kept_under_the_earlier_hash_is_adopted_not_retrained():
    from cagnet.book import _digest, _key

    cfg = _tiny().replace(method="zs3net")
    # the hash of the whole configuration as written
    earlier = run_dir(cfg).with_name("toy-zs3net-" + _digest(_key(cfg)))
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    folder = run_dir(cfg)
    assert folder != earlier and not earlier.exists()
    assert (folder / "metrics.json").read_text() == "{}"  # the kept run, under the new name
    earlier.mkdir()  # a second copy does not overwrite the adopted run
    assert run_dir(cfg) == folder and earlier.exists()


def test_a_number_is_one_setting_whether_written_as_int_or_float():
    cfg = _tiny()
    as_int = config_with(cfg, train=dict(lr_mult_aspp_weight=1, iters=3))
    as_float = config_with(cfg, train=dict(lr_mult_aspp_weight=1.0, iters=3.0))
    assert run_dir(as_int) == run_dir(as_float)
    assert run_dir(config_with(cfg, train=dict(lr_mult_aspp_weight=2))) != run_dir(as_int)


def test_self_training_settings_count_only_for_a_run_that_self_trains():
    cfg = _tiny()
    assert run_dir(config_with(cfg, train=dict(lr_st=1e-3))) == run_dir(cfg)
    st = config_with(cfg, train=dict(self_train=True))
    assert run_dir(config_with(st, train=dict(lr_st=1e-3))) != run_dir(st)
    assert run_dir(st) != run_dir(cfg)


def test_cm_learning_rate_counts_only_for_the_method_with_cm():
    cfg = _tiny()
    for method, same in (("zs3net", True), ("seen-only", True), ("cagnet", False)):
        base = cfg.replace(method=method)
        faster = config_with(base, train=dict(lr_mult_context=1.0))
        assert (run_dir(faster) == run_dir(base)) is same


def test_self_training_runs_start_from_the_finished_run_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CAGNET_CACHE", str(tmp_path))
    tr = _toy_results()
    base = _tiny().replace(method="cagnet")
    st = config_with(base, train=dict(self_train=True))
    assert tr.start_from_finished_run(st, run_dir(st)) is None  # nothing to start from
    toy_run("cagnet", base)
    name = tr.start_from_finished_run(st, run_dir(st))
    assert name == run_dir(base).name
    assert (run_dir(st) / "checkpoint.pt").read_bytes() == \
        (run_dir(base) / "checkpoint.pt").read_bytes()
    assert tr.start_from_finished_run(st, run_dir(st)) == name  # remembered on a rescoring
    assert tr.start_from_finished_run(base, run_dir(base)) is None  # not a self-training run


def test_finished_run_tells_a_trained_run_from_one_not_yet_trained():
    from cagnet.book import finished_run
    cfg = config_with(_tiny(), train=dict(seed=7))
    assert not finished_run(cfg)
    toy_run(cfg.method, cfg)
    assert finished_run(cfg)


def test_results_run_loads_a_results_page_variant_only_once_it_has_finished(tmp_path,
                                                                           monkeypatch):
    import cagnet.book as book

    monkeypatch.setenv("CAGNET_CACHE", str(tmp_path))  # an empty cache

    rows = {"runs": [{"method": "tiny", "spec": "cagnet", "split": "default", "seed": 0}]}
    monkeypatch.setattr(book, "book_results", lambda name: rows)
    asked = []
    monkeypatch.setattr(book, "spec_config",
                        lambda spec, split, seed: asked.append((spec, split, seed)) or _tiny())
    assert book.results_run("not on the page") is None
    folder = run_dir(_tiny())
    assert book.results_run("tiny") is None  # not trained: None, and nothing trained
    assert not folder.exists()
    toy_run("cagnet", _tiny())
    loaded = book.results_run("tiny", "alt", 2)
    assert asked[-1] == ("cagnet", "alt", 2)
    assert loaded is not None and loaded.history == toy_run("cagnet", _tiny()).history


def test_results_page_shortcut_table_averages_the_seeds_of_each_method_and_split():
    tr = _toy_results()

    def row(seed, on, off, cut):
        return {"method": "m", "split": "default", "seed": seed, "context": {"shortcut": {
            "on_favourite": on, "elsewhere": off, "to_favourite_shape": cut}}}

    text = tr.shortcut_table([row(0, 0.8, 0.1, 0.7), row(1, 0.6, 0.3, 0.5)])
    assert "| m | default | 0.70 | 0.20 | 0.60 |" in text
    assert tr.shortcut_table([{"method": "m", "split": "default", "context": {}}]) == ""


def test_results_page_command_lists_exactly_the_runs_of_its_table():
    """book/results.md says its table was produced by the command it shows: the runs that
    command asks for are, in order, the rows of book/results_toy.json."""
    import json
    import re
    import subprocess

    tr = _toy_results()
    page = (ROOT / "book" / "results.md").read_text()
    block = re.search(r"```bash\n(.*?python benchmarks/toy_results\.py.*?)```", page, re.S)
    assert block, "book/results.md shows no toy_results.py command"
    # run the block's shell lines with `python` printing its arguments, one per line
    out = subprocess.run(["bash", "-c", "python() { printf '%s\\n' \"$@\"; }\n"
                          + block.group(1)], capture_output=True, text=True, check=True).stdout
    args = out.splitlines()
    opt = {a: args[i + 1] for i, a in enumerate(args) if a.startswith("--")}
    runs = tr.planned_runs(opt["--methods"], opt["--seeds"].split(","),
                           opt["--splits"].split(","))
    planned = [(tr.spec_name(s), tr.spec_body(s), split, seed) for s, split, seed in runs]
    rows = json.loads((ROOT / "book" / "results_toy.json").read_text())["runs"]
    table = [(r["method"], r["spec"], r["split"], r["seed"]) for r in rows]
    assert planned == table, "book/results.md's command and book/results_toy.json disagree"


def test_pooled_results_count_a_variants_extra_seeds_as_its_own(monkeypatch):
    import cagnet.book as book

    rows = [{"method": "live-centred", "split": "alt", "seed": 0, "hiou": 0.5},
            {"method": "live-centred-seeds3-5", "split": "alt", "seed": 3, "hiou": 0.4},
            {"method": "zs3net", "split": "alt", "seed": 0, "hiou": 0.45},
            {"method": "zs3net-seeds3-5", "split": "alt", "seed": 3, "hiou": 0.42},
            {"method": "zs3net", "split": "default", "seed": 1, "hiou": 0.3}]
    monkeypatch.setattr(book, "book_results", lambda name: {"runs": rows})
    pooled = book.pooled_results()
    assert [r["method"] for r in pooled] == ["live-centred", "live-centred", "zs3net",
                                             "zs3net", "zs3net"]
    leads = book.paired_leads(pooled, "live-centred", "zs3net")
    assert [(s, n) for s, n, _ in leads] == [("alt", 0), ("alt", 3)]  # default/1: no pair
    assert [round(g, 3) for *_, g in leads] == [0.05, -0.02]
    assert {s: round(m, 3) for s, m in book.mean_leads(leads).items()} == {"alt": 0.015}
    two = [("default", 0, 0.1), ("alt", 0, 0.2), ("alt", 1, 0.0)]
    assert list(book.mean_leads(two)) == ["alt", "default"]
    assert book.mean_leads(two)["default"] == 0.1
