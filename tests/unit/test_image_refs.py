"""Image references (taskvpc.agent.images.refs): Docker's normalisation, and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.agent.images import ImageConfig
from taskvpc.agent.images.refs import InvalidReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("myuser/app", "docker.io/myuser/app:latest"),
        ("myuser/app:v2", "docker.io/myuser/app:v2"),
        ("ghcr.io/org/team/app:1.0", "ghcr.io/org/team/app:1.0"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:dev", "localhost:5000/app:dev"),
        ("registry.local:5000/a_b/c-d.e:T_1", "registry.local:5000/a_b/c-d.e:T_1"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("Registry/app", "Registry/app:latest"),  # an upper-case first part can only be a host
        ("localhost:5000", "docker.io/library/localhost:5000"),  # no slash: a name and a tag
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),  # the digest pins it
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1",
        ),
    ],
)
def test_normalised_like_docker(text: str, canonical: str) -> None:
    assert str(parse_reference(text)) == canonical


def test_parts_and_familiar_form() -> None:
    ref = parse_reference("busybox")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "docker.io",
        "library/busybox",
        "latest",
        None,
    )
    assert ref.familiar == "busybox:latest"
    assert parse_reference("myuser/app:v2").familiar == "myuser/app:v2"
    assert parse_reference("ghcr.io/a/b").familiar == "ghcr.io/a/b:latest"
    pinned = parse_reference(f"busybox:1@{DIGEST}")
    assert (pinned.tag, pinned.digest) == ("1", DIGEST)
    assert pinned.familiar == f"busybox@{DIGEST}"
    assert pinned.with_tag("2").familiar == "busybox:2"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "invalid image reference"),
        (" busybox", "invalid image reference"),
        ("BusyBox", "lowercase"),
        ("myuser/App", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-bad", "invalid tag"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@sha256:abc", "invalid digest"),
        ("busybox@md5:" + "ab" * 16, "invalid digest"),
        ("a//b", "invalid image name"),
        ("a/b/", "invalid image name"),
        ("/busybox", "invalid image name"),
        ("bad_-host.io:x/app", "invalid"),
        ("app..name", "invalid image name"),
        ("-app", "invalid image name"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
    ],
)
def test_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(InvalidReference, match=complaint):
        parse_reference(text)


_first = st.from_regex(r"[a-z0-9]{1,8}(?:[_-][a-z0-9]{1,8}){0,2}", fullmatch=True)  # a "." would make a host
_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_registry = st.sampled_from(["", "ghcr.io/", "localhost:5000/", "registry.example.com/", "docker.io/"])


@given(_registry, _first, st.lists(_component, max_size=2), st.none() | _tag)
def test_canonical_form_is_a_fixed_point(registry: str, first: str, rest: list[str], tag: str | None) -> None:
    path = [first, *rest]
    text = registry + "/".join(path) + (f":{tag}" if tag else "")
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar) == ref
    assert ref.tag == (tag or "latest")
    assert str(ref).endswith("/".join(path) + f":{ref.tag}")
    if not registry or registry == "docker.io/":
        assert ref.registry == "docker.io"
        assert ref.repository.count("/") >= 1  # single names land in library/


@given(
    st.lists(st.text(min_size=1, max_size=5), max_size=3),
    st.lists(st.text(max_size=5), max_size=3),
    st.lists(st.tuples(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), st.text(max_size=6)), max_size=3),
    st.none() | st.from_regex(r"/[a-z]{1,6}", fullmatch=True),
    st.none() | st.sampled_from(["nobody", "1000:1000"]),
)
def test_image_config_round_trips_through_oci(
    entrypoint: list[str],
    cmd: list[str],
    env: list[tuple[str, str]],
    working_dir: str | None,
    user: str | None,
) -> None:
    config = ImageConfig(tuple(entrypoint), tuple(cmd), tuple(env), working_dir, user)
    assert ImageConfig.from_oci({"config": config.to_oci()}) == config


def test_image_config_reads_docker_fields_and_tolerates_nulls() -> None:
    document = {
        "config": {
            "Entrypoint": None,
            "Cmd": ["httpd", "-f"],
            "Env": ["PATH=/bin", "EMPTY=", "A=b=c"],
            "WorkingDir": "",
            "User": "nobody",
        }
    }
    config = ImageConfig.from_oci(document)
    assert config == ImageConfig(
        (), ("httpd", "-f"), (("PATH", "/bin"), ("EMPTY", ""), ("A", "b=c")), None, "nobody"
    )
    assert ImageConfig.from_oci({}) == ImageConfig()
