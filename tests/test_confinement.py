"""The one path confinement: every path-typed field found from the models' types, resolved as
the job would open it, and held to the data roots. Plain files in a temp dir, no service."""

from __future__ import annotations

import json
import pickle
import tarfile
from pathlib import Path

import pytest

from pipelines.specs import IngestSpec, PipelineSpec, SpecError, SweepSpec, build_spec
from pipelines.specs.common import PathText, Spec
from pipelines.specs.paths import Confinement, PathOutsideRoots, confine, spec_paths
from pipelines.specs.transport import SpecTampered, decode_spec, encode_spec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "train").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "evil.tar").write_bytes(b"x")
    return tmp_path / "root"


def _jail(root: Path, *prefixes: str) -> Confinement:
    return Confinement.of([root], prefixes)


def test_a_path_field_added_later_is_found_from_its_type() -> None:
    class Section(Spec):
        cache: PathText | None = None

    class NewSpec(Spec):
        extra: PathText
        sections: tuple[Section, ...] = ()

    spec = NewSpec(extra="/a", sections=(Section(cache="/b"), Section()))
    assert [(f.field, f.value) for f in spec_paths(spec)] == [
        ("extra", "/a"),
        ("sections.0.cache", "/b"),
    ]


def test_nested_sections_weights_and_sources_are_found() -> None:
    pipe = PipelineSpec(
        data="/r/d",
        source="shards:/r/{split}-*.tar",
        pretrain={"storage_path": "/s"},
        sweep={"storage_path": "/t"},
    )
    assert {f.field: f.value for f in spec_paths(pipe)} == {
        "data": "/r/d",
        "source": "/r/{split}-*.tar",
        "pretrain.storage_path": "/s",
        "sweep.storage_path": "/t",
    }
    sweep = SweepSpec(data="/d", pretrained=["/w/encoder.pt", "runs:/" + "a" * 32])
    assert "pretrained.0.path" in {f.field for f in spec_paths(sweep)}
    assert [f.field for f in spec_paths(IngestSpec(source="synthetic:20", out="/o"))] == ["out"]


@pytest.mark.parametrize(
    "out",
    [
        "{root}/../outside/x",
        "{root}/a/../../outside/x",
        "{root}/${{N}}/../${{N}}/../../outside/x",
        "/etc",
    ],
)
def test_dotdot_escapes_are_refused(root: Path, out: str) -> None:
    spec = IngestSpec(source="synthetic:20", out=out.format(root=root))
    with pytest.raises(PathOutsideRoots, match="outside the allowed data roots"):
        confine(spec, _jail(root))


def test_inside_paths_pass(root: Path) -> None:
    confine(IngestSpec(source=f"imagefolder:{root}/train", out=f"{root}/data"), _jail(root))
    confine(IngestSpec(source=f"shards:{root}/{{split}}/*.tar", out=f"{root}/d"), _jail(root))


def test_symlink_escape_is_refused(root: Path) -> None:
    (root / "link").symlink_to(root.parent / "outside")
    spec = IngestSpec(source="synthetic:20", out=str(root / "link" / "data"))
    with pytest.raises(PathOutsideRoots, match=r"^out: "):
        confine(spec, _jail(root))


@pytest.mark.parametrize(
    "source",
    [
        "shards:{root}/*/../../outside/*.tar",
        "cifar10:{root}/{{split}}/../../outside/evil.tar",
        "shards:{root}/../outside/*.tar",
    ],
)
def test_glob_and_split_escapes_are_refused(root: Path, source: str) -> None:
    spec = IngestSpec(source=source.format(root=root), out=str(root / "d"))
    with pytest.raises(PathOutsideRoots):
        confine(spec, _jail(root))


def test_every_glob_match_is_checked(root: Path) -> None:
    (root / "train" / "ok.tar").write_bytes(b"x")
    (root / "train" / "bad.tar").symlink_to(root.parent / "outside" / "evil.tar")
    spec = IngestSpec(source=f"shards:{root}/train/*.tar", out=str(root / "d"))
    with pytest.raises(PathOutsideRoots, match=r"bad\.tar"):
        confine(spec, _jail(root))


def test_storage_urls_only_under_an_allowed_prefix(root: Path) -> None:
    data = str(root / "d")
    spec = SweepSpec(data=data, inits=["scratch"], storage_path="s3://bucket/selfie/x")
    with pytest.raises(PathOutsideRoots, match="none are allowed"):
        confine(spec, _jail(root))
    confine(spec, _jail(root, "s3://bucket/selfie/"))
    redirected = spec.model_copy(
        update={"storage_path": "s3://bucket/selfie/x?endpoint_override=evil.example"}
    )
    with pytest.raises(PathOutsideRoots):
        confine(redirected, _jail(root, "s3://bucket/selfie/"))
    with pytest.raises(PathOutsideRoots):  # a URL where only paths are meant
        confine(SweepSpec(data="s3://bucket/selfie/d", inits=["scratch"]), _jail(root, "s3://"))


@pytest.mark.parametrize("name", ["x-${AWS_SECRET_ACCESS_KEY}", "a/b", "..", "x\ny", "{x}"])
def test_names_that_could_expand_or_climb_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="experiment: a name"):
        build_spec(SweepSpec, {"data": "/d", "experiment": name, "inits": ["scratch"]})


def test_run_name_of_dots_is_refused() -> None:
    with pytest.raises(SpecError, match="run_name"):
        build_spec(SweepSpec, {"data": "/d", "run_name": "..", "inits": ["scratch"]})


def test_ray_state_of_one_run_name_in_two_experiments_lies_apart(tmp_path: Path) -> None:
    """Ray names a run's folder by the run name alone: each experiment gets its own folder
    under the storage, so a second user's run of the same name cannot resume the first's."""
    from pipelines.specs.settings import Settings

    settings = Settings(workdir=tmp_path)
    a, b = settings.run_storage(None, "team-a"), settings.run_storage(None, "team-b")
    assert a != b and Path(a).parent == Path(b).parent == Path(settings.resolved_storage_path)
    assert settings.run_storage("s3://bucket/x/", "team-a") == "s3://bucket/x/team-a"


def test_the_spec_travels_unchanged_or_is_refused() -> None:
    spec = {"source": "synthetic:20", "out": "/r/data-${HOME}"}
    encoded, digest = encode_spec(spec)
    assert "$" not in encoded and decode_spec(encoded, digest) == spec
    other, _ = encode_spec({**spec, "out": "/r/data-/root"})
    with pytest.raises(SpecTampered, match="does not match the sha256"):
        decode_spec(other, digest)


def test_manifest_and_result_paths_are_held_to_the_roots(root: Path, monkeypatch) -> None:
    from pipelines.data.manifest import resolve
    from pipelines.specs.settings import Settings, get_settings
    from pipelines.sweep.weights_source import resolve_weights

    monkeypatch.setenv("SELFIE_DATA_ROOTS", str(root))
    get_settings.cache_clear()
    try:
        assert resolve(root, "train/0.tar") == root / "train" / "0.tar"
        with pytest.raises(PathOutsideRoots, match="manifest"):
            resolve(root, str(root.parent / "outside" / "evil.tar"))
        with pytest.raises(PathOutsideRoots, match="manifest"):
            resolve(root, "../outside/evil.tar")
        folder = root / "pre"
        folder.mkdir()
        evil = str(root.parent / "outside" / "evil.tar")
        spec = SweepSpec(data=str(root), pretrained=[str(folder)])
        for key in ("encoder_file", "encoder"):  # encoder: a result.json of before the rename
            (folder / "result.json").write_text(json.dumps({key: evil, "mlflow_run_id": ""}))
            with pytest.raises(PathOutsideRoots, match=r"result\.json"):
                resolve_weights(spec.pretrained[0], Settings())
    finally:
        get_settings.cache_clear()


def _pickle_calling(func, arg) -> bytes:
    class Evil:
        def __reduce__(self):
            return (func, (arg,))

    return pickle.dumps(Evil())


@pytest.mark.parametrize("how", ["os.system", "builtins.eval"])
def test_a_cifar_tarball_with_a_malicious_pickle_runs_nothing(tmp_path: Path, how: str) -> None:
    import builtins
    import os

    from pipelines.ingest.sources import SourceError, cifar10

    marker = tmp_path / "ran"
    payload = (
        _pickle_calling(os.system, f"touch {marker}")
        if how == "os.system"
        else _pickle_calling(builtins.eval, f"open({str(marker)!r}, 'w')")
    )
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        (tmp_path / "b").write_bytes(payload)
        tar.add(tmp_path / "b", arcname="cifar-10-batches-py/data_batch_1")
    with pytest.raises(SourceError, match=f"not a CIFAR-10 batch.*{how.split('.')[1]}"):
        cifar10(str(tar_path))
    assert not marker.exists()
