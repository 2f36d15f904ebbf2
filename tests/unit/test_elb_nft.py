"""The NLB compiler: listeners -> one nftables table of weighted DNAT maps (text), and nft's own check of it
in a throwaway network namespace (root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from taskvpc.netmodel import elb_nft as nlb


def _listeners() -> list[nlb.NlbListener]:
    return [
        nlb.NlbListener(80, "TCP", (nlb.Backend("10.0.1.5", 8080, 3), nlb.Backend("10.0.1.6", 8080, 1))),
        nlb.NlbListener(53, "TCP_UDP", (nlb.Backend("10.0.1.7", 53),), preserve_client_ip=True),
        nlb.NlbListener(9000, "TCP", ()),
    ]


def test_weighted_map_ranges_cover_the_total() -> None:
    text = nlb.compile_table("abc", "10.0.0.9", _listeners())
    assert (
        "ip daddr 10.0.0.9 tcp dport 80 dnat ip to numgen random mod 4 map { 0-2 : 10.0.1.5 . 8080, 3 : 10.0.1.6 . 8080 }"
        in text
    )
    assert "ip daddr 10.0.0.9 tcp dport 53 dnat ip to numgen random mod 1 map { 0 : 10.0.1.7 . 53 }" in text
    assert "ip daddr 10.0.0.9 udp dport 53 dnat ip to numgen random mod 1 map { 0 : 10.0.1.7 . 53 }" in text
    assert "ip daddr 10.0.0.9 tcp dport 9000 reject with tcp reset" in text  # no target to send to
    snat = [line.strip() for line in text.splitlines() if "snat" in line]
    # Client IP preserved on port 53 (no SNAT); port 80 replies must return through the NLB.
    assert snat == [
        "meta l4proto tcp ct original ip daddr 10.0.0.9 ct original proto-dst 80 ct status dnat snat ip to 10.0.0.9"
    ]


def test_several_enis_mark_flows_with_their_arrival_interface() -> None:
    marks = [("eth0", 100), ("eth1", 101)]
    text = nlb.compile_table("abc", ["10.0.0.9", "10.0.16.9"], _listeners()[:1], marks)
    assert 'ct state new ct mark set iifname map { "eth0" : 100, "eth1" : 101 }' in text
    assert "meta mark set ct mark" in text  # replies carry it too, so they route by the same table
    assert "ip daddr 10.0.16.9 tcp dport 80 dnat" in text
    assert "ingress_mark" not in nlb.compile_table("abc", "10.0.0.9", _listeners())


def test_pick_targets_prefers_healthy_and_fails_open() -> None:
    rows = [("10.0.1.5", 80, "healthy"), ("10.0.1.6", 80, "unhealthy"), ("10.0.1.7", 80, "draining")]
    assert nlb.pick_targets(rows) == (nlb.Backend("10.0.1.5", 80),)
    rows = [("10.0.1.6", 80, "unhealthy"), ("10.0.1.8", 80, "initial"), ("10.0.1.7", 80, "draining")]
    assert nlb.pick_targets(rows) == (nlb.Backend("10.0.1.6", 80), nlb.Backend("10.0.1.8", 80))


def test_tls_listener_is_refused() -> None:
    with pytest.raises(ValueError, match="TLS"):
        nlb.compile_table("abc", "10.0.0.9", [nlb.NlbListener(443, "TLS", ())])


@pytest.mark.root
@pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None, reason="needs nft and unshare"
)
def test_nft_accepts_the_batch_in_a_private_namespace(tmp_path: Path) -> None:
    assert os.geteuid() == 0
    batch = tmp_path / "nlb.nft"
    batch.write_text(
        nlb.replace_batch("w3test", ["10.0.0.9", "10.0.16.9"], _listeners(), [("eth0", 100), ("eth1", 101)])
    )
    # A namespace of its own (gone when the command exits): nothing on the host is touched.
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"nft -f {batch} && nft list table ip {nlb.table_name('w3test')}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "numgen random mod 4 map { 0-2 : 10.0.1.5 . 8080, 3 : 10.0.1.6 . 8080 }" in result.stdout
    assert "ct mark set iifname map" in result.stdout


def test_preserving_listener_is_dnat_only() -> None:
    kept = nlb.NlbListener(80, "TCP", (nlb.Backend("10.0.1.5", 8080),), preserve_client_ip=True)
    table = nlb.compile_table("abc", "10.0.0.9", [kept])
    assert (
        "ip daddr 10.0.0.9 tcp dport 80 dnat ip to numgen random mod 1 map { 0 : 10.0.1.5 . 8080 }" in table
    )
    assert "snat" not in table
    assert nlb.delete_batch("abc") == "table ip tvnlb_abc\ndelete table ip tvnlb_abc\n"
