"""Configs from files: the schema <- a scale file <- a variant file <- a sweep's and a run's keys <- the command line,
merged by OmegaConf and checked at every layer. An unknown key or a value of the wrong type is a `ConfigError` that
names the key and the closest valid ones, before any work starts.

The files live in lightning_electra/configs/{scales,variants,sweeps}/, package data (the runner's knowledge, not the
library's).
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightning_electra.config import Config, ConfigError, check
from lightning_electra.data.files import check_data
from lightning_electra.io import atomic_write_text
from lightning_electra.log import logger
from lightning_electra.objectives import OBJECTIVES, objective, option_sections, section

log = logger("lightning_electra")

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"  # lightning_electra/configs/, shipped as package data


@functools.cache
def schema() -> type[Config]:
    """The whole schema: `Config` with each objective's options (its `Options`) as the section named after it. It
    loads the objectives, so torch; the core keys alone are checked without (`compose(checked="fields")`)."""
    return make_dataclass("Config", [(name, options, field(default_factory=options))
                                     for name, options in option_sections().items()], bases=(Config,))


@functools.cache
def schema_keys(cls: Any, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of a dataclass schema, mapped to its field type."""
    keys = {}
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        keys[prefix + f.name] = f.type
        if is_dataclass(default):
            keys.update(schema_keys(type(default), prefix + f.name + "."))
    return keys


OBJECTIVE_SECTIONS = {section(variant) for variant in OBJECTIVES}  # where objectives' options go (the names known)


def _check_keys(layer: DictConfig, source: str, keys: dict[str, Any], prefix: str = "") -> None:
    for key, value in layer.items_ex(resolve=False):
        dotted = prefix + str(key)
        if dotted.startswith("finetune.task_epochs."):
            continue  # a free-form mapping task -> epochs
        if dotted not in keys:
            close = difflib.get_close_matches(dotted, keys, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Valid keys: {', '.join(sorted(keys))}."
            raise ConfigError(f"Unknown config key '{dotted}' in {source}.{hint}")
        if isinstance(value, DictConfig) and dotted != "finetune.task_epochs":
            _check_keys(value, source, keys, dotted + ".")


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        options = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError(f"Config file {path} does not exist. Available here: {', '.join(options) or 'none'}.")
    layer = OmegaConf.load(path)
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys, not a {type(layer).__name__}.")
    return layer


def _merge(base: DictConfig, layer: DictConfig, source: str, keys: dict[str, Any]) -> DictConfig:
    _check_keys(layer, source, keys)
    try:
        return OmegaConf.merge(base, layer)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        msg = str(err.msg if hasattr(err, "msg") else err).splitlines()[0].rstrip(".")  # the rest: OmegaConf internals
        choices = re.search(r"expected one of \[(.*)\]", msg)
        if choices:  # a Choice key (config.Choice): name the valid values and the closest
            valid, got = choices.group(1).split(", "), str(getattr(err, "value", ""))
            close = difflib.get_close_matches(got, valid, n=1, cutoff=0.5)
            raise ConfigError(f"Bad value for '{key}' in {source}: '{got}' is not one of {', '.join(valid)}."
                              + (f" Did you mean {close[0]}?" if close else "")) from None
        expected = f" Expected {keys[key]} (see lightning_electra/config.py)." if key in keys else ""
        raise ConfigError(f"Bad value for '{key}' in {source}: {msg}.{expected}") from None


def parse_overrides(overrides: list[str] | None) -> DictConfig:
    """`key=value` strings (as from the command line or `make ... OVERRIDES=`) to a config layer."""
    bad = [o for o in overrides or [] if "=" not in o]
    if bad:
        raise ConfigError(f"Overrides must look like key=value (e.g. train.steps=100); got: {' '.join(bad)}")
    try:
        return OmegaConf.from_dotlist(list(overrides or []))
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse overrides {overrides}: {err}") from None


def scale_names() -> list[str]:
    """The scales shipped: configs/scales/<name>.yaml."""
    return sorted(path.stem for path in (CONFIG_ROOT / "scales").glob("*.yaml"))


def default_scale() -> str:
    return "tiny" if gpu_visible() else "smoke"


def gpu_visible() -> bool:
    """Whether a CUDA device is visible, asked of the driver itself (in milliseconds; importing torch takes
    seconds): libcuda's device count, which honours CUDA_VISIBLE_DEVICES as torch does."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def pick_scale(scale: str | None = None, overrides: list[str] | None = None, announce: bool = False) -> str:
    """The scale asked for (argument, `scale=` override, $SCALE), or auto's pick: smoke without a GPU, tiny with one."""
    scale = scale or parse_overrides(overrides).get("scale") or os.environ.get("SCALE") or None
    if scale and scale != "auto":
        return scale
    scale = default_scale()
    if announce:
        log.info(f"SCALE not given: picked '{scale}' "
                 f"({'a GPU is visible' if scale == 'tiny' else 'no GPU visible'}).")
    return scale


def load_config(scale: str | None = None, variant: str | None = None, layers: list[tuple[Any, str]] | None = None,
                overrides: list[str] | None = None, announce: bool = False, full: bool = True) -> Config:
    """Build a run's config: schema <- scales/<scale>.yaml <- variants/<variant>.yaml (where there is one) <- layers <-
    overrides.

    `layers` are extra (mapping, where-it-came-from) pairs, such as a sweep's common keys and one run's keys.
    `full=False` checks the schema's own rules only (no torch imported).
    """
    cli = parse_overrides(overrides)
    scale = pick_scale(scale, overrides, announce)
    pending = list(layers or [])
    # A run picks its variant in a layer or on the command line; its file goes under the run's own keys.
    variant = variant or cli.get("variant") or next((dict(l).get("variant") for l, _ in reversed(pending)
                                                     if dict(l).get("variant")), None) or Config.variant
    own = CONFIG_ROOT / "variants" / f"{variant}.yaml"  # only where a variant changes other keys (bert's masking)
    files = [(_read_yaml(CONFIG_ROOT / "scales" / f"{scale}.yaml"), f"scales/{scale}.yaml"),
             (OmegaConf.create({"scale": scale, "variant": variant}), "the scale and the variant"),
             *([(_read_yaml(own), f"variants/{variant}.yaml")] if own.is_file() else [])]
    return compose([*files, *((OmegaConf.create(layer), source) for layer, source in pending),
                    (cli, "command-line overrides")], checked="all" if full else "fields")


def load_run_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """A run's saved config.yaml over the schema (keys added since take their defaults), then overrides.

    data.data_dir is where, not what: when the saved one is gone (another machine, a relative path from another
    working directory) and no override names one, $DATA_DIR is used.
    """
    cli = parse_overrides(overrides)
    saved = [(OmegaConf.load(path), str(path))] if path is not None else []
    if saved and "data_dir" not in cli.get("data", {}) and os.environ.get("DATA_DIR"):
        where = compose([*saved, (cli, "command-line overrides")], checked=None).data.data_dir
        if not Path(where).is_dir():  # the saved data directory is not here: $DATA_DIR's is, as a layer of its own
            saved.append((OmegaConf.create({"data": {"data_dir": os.environ["DATA_DIR"]}}),
                          f"$DATA_DIR (the saved data.data_dir {where} is not here)"))
    return compose([*saved, (cli, "command-line overrides")], checked=None)


def compose(layers: list[tuple[DictConfig, str]], checked: str | None = "all") -> Config:
    """The schema with each (layer, where it came from) merged in turn, resolved, and validated: `checked`="all",
    "fields" (the core schema's rules only, no torch: the objectives' sections are left to the full check) or None."""
    core = checked == "fields"
    cls = Config if core else schema()
    keys = schema_keys(cls)
    cfg: DictConfig = OmegaConf.structured(cls)
    for layer, source in layers:
        if core:
            layer = OmegaConf.masked_copy(layer, [k for k in layer if k not in OBJECTIVE_SECTIONS])
        cfg = _merge(cfg, layer, source, keys)
    try:
        resolved = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        # e.g. an environment default of the wrong type (NUM_NODES=two): name the key, not OmegaConf's internals
        key, msg = getattr(err, "full_key", None), getattr(err, "msg", str(err))
        raise ConfigError(f"Config could not be resolved: bad value for '{key}': {msg.splitlines()[0]}" if key
                          else f"Config could not be resolved: {err}") from None
    if checked == "fields":
        check(resolved)  # type: ignore[arg-type]
    elif checked:
        validate(resolved)  # type: ignore[arg-type]
    return resolved  # type: ignore[return-value]


def validate(cfg: Config) -> None:
    """The schema's own checks, then the objective's (a variant refuses what it cannot run) and the shapes'."""
    check(cfg)
    from lightning_electra.models import generator_shape  # torch: after the checks that need none

    objective(cfg.variant).check_config(cfg)
    if cfg.model.generator == "learned":
        generator_shape(cfg.model)  # refuses a G width its heads do not divide, now rather than when it is built


# flops: each run derives its steps from train.flops_budget (BERT more than ELECTRA for the same compute);
# electra-steps: every run trains the steps the scale's default ELECTRA gets from it (the paper's generator sizes)
BUDGETS = ("flops", "electra-steps")


@dataclass
class SweepFile:
    """A sweep file's schema (lightning_electra/configs/sweeps/*.yaml): a bad key or value in one is refused as a
    config's is. A run's own keys are config keys, checked when the run's config is composed."""

    runs: list[dict[str, Any]] = field(default_factory=list)  # each: a unique name, then config keys, seeds, at_scale
    name: Optional[str] = None  # names the sweep's results (default: the file's name)
    paper_experiment: Optional[str] = None  # rows of analysis/paper/paper_results.csv drawn beside ours
    claims: list[str] = field(default_factory=list)  # "a > b": the paper's orderings, checked on our numbers
    figure: Optional[str] = None  # a report's own figure (generator_width), beside GLUE against FLOPs
    budget: str = "flops"  # one of BUDGETS
    seeds: int = 1  # pre-training seeds of every run (a run may say its own)
    common: dict[str, Any] = field(default_factory=dict)  # config keys every run shares


SWEEP_KEYS = [f.name for f in fields(SweepFile)]


def load_sweep(name: str) -> dict:
    """A sweep file: lightning_electra/configs/sweeps/<name>.yaml, or `name` itself when it is the path of a YAML file
    (a sweep of one's own, kept anywhere); its `name` (default: the file's) names its results."""
    own = Path(name)
    path = own if own.suffix in (".yaml", ".yml") and own.is_file() else CONFIG_ROOT / "sweeps" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"No sweep '{name}' ({path} does not exist). Known sweeps: {', '.join(known)}; or give "
                          "the path of a sweep file.")
    layer = OmegaConf.load(path)
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path} must hold a mapping with a `runs` list; see lightning_electra/configs/sweeps/.")
    for key in layer:
        if key not in SWEEP_KEYS:
            close = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1, cutoff=0.5)
            raise ConfigError(f"Unknown key '{key}' in {path}." + (f" Did you mean {close[0]}?" if close else "")
                              + f" A sweep file holds {', '.join(SWEEP_KEYS)}.")
    try:
        sweep = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(SweepFile), layer))
    except OmegaConfBaseException as err:
        key, msg = getattr(err, "full_key", None) or "?", str(getattr(err, "msg", err)).splitlines()[0].rstrip(".")
        raise ConfigError(f"Bad value for '{key}' in {path}: {msg}.") from None
    names = [r.get("name") for r in sweep["runs"]]
    if not names or None in names or len(set(names)) != len(names):
        raise ConfigError(f"{path}: every run needs a unique `name`; got {names}.")
    if sweep["budget"] not in BUDGETS:
        raise ConfigError(f"{path}: budget must be one of {', '.join(BUDGETS)}; got {sweep['budget']}.")
    return {**sweep, "name": sweep["name"] or path.stem, "runs": with_seeds(sweep, path)}


def with_seeds(sweep: dict, path: Path) -> list[dict]:
    """The runs, each repeated over its pre-training seeds (`seeds: N`, the sweep's or a run's own; default 1): run
    `<name>` keeps its seed (so adding seeds moves no result), `<name>-seed<k>` trains with the run's train.seed (0
    unless it sets one) + k. Each is a run of its own (its own hash, directory and rows); reports fold them into one
    arm (analysis/claims.py)."""
    runs = []
    for run in sweep["runs"]:
        count = run.get("seeds", sweep.get("seeds", 1))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{path}: seeds (pre-training seeds of a run) must be a whole number of at least 1; got "
                              f"{count!r} for run {run['name']}.")
        own = {k: v for k, v in run.items() if k != "seeds"}
        first = (own.get("train") or {}).get("seed", 0)
        runs.append(own)
        runs += [{**own, "name": f"{own['name']}-seed{k}", "train": {**(own.get("train") or {}), "seed": first + k}}
                 for k in range(1, count)]
    return runs


def sweep_layers(sweep: dict, scale: str) -> tuple[list, list[list]]:
    """(the layers every run shares, each run's own layers): the common keys; a run's keys, then its keys for
    `scale` (`at_scale`)."""
    name = sweep["name"]
    common = [(sweep.get("common") or {}, f"sweep {name} common")]
    runs = [[({k: v for k, v in r.items() if k != "at_scale"}, f"sweep {name} run {r['name']}"),
             ((r.get("at_scale") or {}).get(scale) or {}, f"sweep {name} run {r['name']} at scale {scale}")]
            for r in sweep["runs"]]
    return common, runs


def check_sweep(name: str, scale: str | None, overrides: list[str]) -> list[Config]:
    """Every run of a sweep checked against the schema's own rules without importing torch: a misspelled key or a
    value out of its range stops a command in seconds, before any work (the objectives' own rules come with the heavy
    imports, still before any work). Returns the runs' configs, for `check_sweep_data`."""
    sweep = load_sweep(name)
    scale = pick_scale(scale, overrides)
    common, runs = sweep_layers(sweep, scale)
    return [load_config(scale, layers=[*common, *run], overrides=overrides, full=False) for run in runs]


def check_sweep_data(configs: list[Config], announce: bool = True) -> None:
    """Every data file the runs will read: a missing or malformed file stops a sweep before any work (`announce`:
    say which GLUE tasks it leaves out for want of files, once)."""
    checked = set()
    for cfg in configs:  # runs mostly share their data: each set of files once
        key = repr((cfg.data, cfg.finetune.tasks, cfg.finetune.source))
        if key not in checked:
            check_data(cfg, announce=announce and not checked)
            checked.add(key)


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
