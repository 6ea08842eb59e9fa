"""Fuzzing the one settings path: whatever values arrive (flags, ``--set``, TOML, the Python API), either one clear
error comes back before any model loads, or the config that reaches the load is valid.

"Valid" is checked here by an oracle written independently of the validator: every number finite, sizes and step
counts in FLUX's range, probabilities in range, devices that exist as names.
"""

from __future__ import annotations

import math

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artaug.cli import main
from artaug.config import Config, ConfigError, describe, load_config, option_names, setting_names
from artaug.loop.paint import PAINT_SETTINGS
from artaug.settings import default_of

SETTINGS = setting_names()
JUNK = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=30),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-1", "16", "1024", "true", "none", "auto", "cuda:99", ""]),
    st.lists(st.text(max_size=5), max_size=3),
)


def near_the_edges(dotted: str) -> st.SearchStrategy:
    """The setting's default and the values at and just past its documented bounds: half valid, half not."""
    f, _ = describe(dotted)
    default, meta = default_of(f), f.metadata
    values = [default, *(meta.get("choices") or ())]
    for bound in (meta.get("min"), meta.get("max"), meta.get("above")):
        if bound is not None:
            step = 1 if isinstance(default, int) and not isinstance(default, bool) else 1e-6
            values += [bound, bound - step, bound + step]
    return st.sampled_from(values)


def value_for(dotted: str) -> st.SearchStrategy:
    edges = near_the_edges(dotted)
    return st.tuples(st.just(dotted), st.one_of(edges, edges, edges, JUNK))  # valid often enough to reach a load


CHANGES = st.lists(st.sampled_from(SETTINGS).flatmap(value_for), min_size=1, max_size=3).map(dict)


def oracle(config: Config) -> list[str]:
    """What no config that reaches a model load may hold, written without the validator."""
    problems = []

    def walk(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else key)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where} = {value}")

    walk(config.to_dict(), "")
    p, loop, critic = config.painter, config.loop, config.critic
    for name in ("height", "width"):
        size = getattr(p, name)
        if not (isinstance(size, int) and 16 <= size <= 4096 and size % 16 == 0):
            problems.append(f"painter.{name} = {size!r}")
    if not (isinstance(p.num_inference_steps, int) and 1 <= p.num_inference_steps <= 1000):
        problems.append(f"steps = {p.num_inference_steps!r}")
    if not 0 < loop.strength <= 1 or not 0 <= loop.rounds <= 20 or loop.edit_weight <= 0 or loop.blur_sigma < 0:
        problems.append(f"loop = {loop}")
    if not 1 <= p.max_sequence_length <= 512 or not 1 <= loop.region_max_sequence_length <= 512:
        problems.append("sequence lengths")
    if not 1 <= critic.max_edits <= 16 or not critic.timeout > 0 or not 0 <= critic.max_retries <= 20:
        problems.append(f"critic = {critic}")
    if p.dtype not in ("auto", "bfloat16", "float16", "float32") or p.offload not in ("none", "model", "sequential"):
        problems.append("painter dtype / offload")
    for device in (p.device, critic.device, config.judge.device):
        if device not in ("auto", "cpu", "mps") and device.split(":")[0] not in ("cuda", "xpu"):
            problems.append(f"device {device!r}")
    if config.train.resolution % 16 or config.train.rank < 1 or not config.train.learning_rate > 0:
        problems.append("train")
    return problems


@settings(max_examples=300, deadline=None)
@given(changes=CHANGES)
def test_api_overrides_give_a_valid_config_or_one_error(changes):
    try:
        config = Config().updated(changes)
    except ConfigError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert oracle(config) == []


@settings(max_examples=150, deadline=None)
@given(tables=CHANGES.map(lambda d: {k: v for k, v in d.items() if v is not None}))
def test_toml_files_give_a_valid_config_or_one_error(tables, tmp_path_factory):
    data: dict = {}
    for dotted, value in tables.items():
        *parents, key = dotted.split(".")
        table = data
        for part in parents:
            table = table.setdefault(part, {})
        table[key] = value
    path = tmp_path_factory.mktemp("toml") / "c.toml"
    try:
        path.write_text(tomli_w.dumps(data))
    except (ValueError, TypeError):  # TOML cannot hold it (e.g. an integer above 2**63): not a file anyone has
        return
    try:
        config = load_config(path)
    except ValueError as error:
        assert str(error)
        return
    assert oracle(config) == []


class Reached(BaseException):  # not an Exception: the CLI must not turn it into an error line
    pass


@pytest.fixture(scope="module")
def reached_loads():
    """Replace the two doors to model loading by recorders that stop the command there."""
    import artaug.loop.components
    import artaug.painter

    seen: list[Config] = []
    patch = pytest.MonkeyPatch()

    def components(cls, config, **kwargs):
        seen.append(config)
        raise Reached

    def painter(cls, painter_config):
        seen.append(Config().updated({f"painter.{k}": v for k, v in painter_config.to_dict().items()}))
        raise Reached

    patch.setattr(artaug.loop.components.Components, "load", classmethod(components))
    patch.setattr(artaug.painter.FluxPainter, "from_config", classmethod(painter))
    yield seen
    patch.undo()


FLAGS = option_names(PAINT_SETTINGS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=CHANGES.map(lambda d: {k: str(v) for k, v in d.items()}),
    as_flag=st.booleans(),
    rounds=st.sampled_from(["0", "1"]),
)
def test_cli_values_never_reach_a_model_load_when_invalid(values, as_flag, rounds, reached_loads, tmp_path_factory,
                                                           monkeypatch, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    flag_of = {dotted: name for name, dotted in FLAGS.items()}
    argv = ["paint", "a fox", "--rounds", rounds]
    for dotted, value in values.items():
        if as_flag and dotted in flag_of and dotted != "loop.rounds":
            argv += [f"--{flag_of[dotted].replace('_', '-')}={value}"]
        else:
            argv += ["--set", f"{dotted}={value}"]
    before = len(reached_loads)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refused the flag's type
        code = exit_.code
    except Reached:  # a load was reached: the config that got there must be valid
        (config,) = reached_loads[before:]
        assert oracle(config) == [], argv
        return
    err = capsys.readouterr().err
    assert code == 2 and err.count("error: ") == 1 and "Traceback" not in err, (argv, err)
    assert len(reached_loads) == before
