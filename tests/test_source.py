import pytest
from hypothesis import given, strategies as st

from zgit import Source, SourceError

SHA = "e9448e0abbc6f03252578ca877bc80c94f137edd"


def test_git_pin_round_trip():
    text = f"trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer@{SHA}"
    source = Source.parse(text)
    assert (source.module, source.attribute, source.pin) == (
        "trainers.my_awesome_trainer.my_trainer_step", "MyAwesomeTrainer", SHA)
    assert source.kind == "git" and source.sha == SHA
    assert source.distribution is None and source.version is None
    assert str(source) == text and Source.parse(str(source)) == source


@pytest.mark.parametrize("pin, dist, version", [
    ("zgit_0.1.0", "zgit", "0.1.0"),
    ("zenml_0.1.4", "zenml", "0.1.4"),
    ("scikit_learn_1.5.2", "scikit_learn", "1.5.2"),
    ("torch_2.1.0+cpu", "torch", "2.1.0+cpu"),
])
def test_dist_pin_splits_at_last_underscore(pin, dist, version):
    source = Source.parse(f"pkg.mod.Cls@{pin}")
    assert source.kind == "dist" and (source.distribution, source.version) == (dist, version)
    assert source.sha is None and str(source) == f"pkg.mod.Cls@{pin}"


def test_unpinned():
    source = Source.parse("pkg.mod.Cls")
    assert source.kind == "unpinned" and source.pin is None and str(source) == "pkg.mod.Cls"


def test_value_semantics():
    a, b = Source.parse(f"a.B@{SHA}"), Source("a", "B", SHA)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(Exception):
        a.module = "x"  # frozen
    assert a.with_pin(None) == Source.parse("a.B")


@pytest.mark.parametrize("text, names", [
    ("", "empty"),
    ("Cls", "module.Attribute"),
    ("pkg.Cls@", "nothing after"),
    ("pkg.1mod.Cls", "'1mod'"),
    ("pkg..Cls", "''"),
    ("pkg.class.Cls", "'class'"),
    ("pkg.mod-x.Cls", "'mod-x'"),
    ("pkg/mod.Cls", "'pkg/mod'"),
    (f"pkg.Cls@{SHA[:39]}", "pin"),
    (f"pkg.Cls@{SHA.upper()}", "pin"),
    ("pkg.Cls@zgit", "pin"),
    ("pkg.Cls@zgit_", "pin"),
    ("pkg.Cls@_0.1", "pin"),
    ("pkg.Cls@a@b", "more than one"),
    (" pkg.Cls", "whitespace"),
    ("..Cls", "''"),
])
def test_malformed_sources_name_the_bad_part(text, names):
    with pytest.raises(SourceError) as info:
        Source.parse(text)
    assert names in str(info.value)


def test_non_string():
    with pytest.raises(SourceError):
        Source.parse(None)  # type: ignore[arg-type]


identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not __import__("keyword").iskeyword(s))
pins = st.one_of(
    st.none(),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
    st.builds(lambda n, v: f"{n}_{v}", st.from_regex(r"[a-z][a-z0-9_]{0,6}[a-z0-9]", fullmatch=True),
              st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)),
)


@given(st.lists(identifier, min_size=1, max_size=4), identifier, pins)
def test_valid_sources_round_trip(module_parts, attribute, pin):
    source = Source(".".join(module_parts), attribute, pin)
    assert Source.parse(str(source)) == source


@given(st.text(max_size=80))
def test_parse_raises_only_source_error(text):
    try:
        source = Source.parse(text)
    except SourceError:
        return
    assert str(source) == text
