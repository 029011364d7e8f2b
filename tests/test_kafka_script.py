"""scripts/kafka.sh pieces that need no broker: the KRaft cluster id."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kafka.sh"


def test_cluster_ids_never_start_like_an_option():
    # The old generator gave an id starting with '-' once in 64 draws (which the storage tool read
    # as an option): 10,000 draws would show ~156 of them.
    done = subprocess.run(["bash", str(SCRIPT), "cluster-id", "10000"], capture_output=True, text=True, timeout=600,
                          check=True)
    ids = done.stdout.split()
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{21}", cluster_id), cluster_id
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16  # a Kafka Uuid: 16 bytes, base64url
    # Every other character is still uniform over the 64 symbols: '-' and '_' do occur after the first.
    assert any("-" in i[1:] for i in ids) and any("_" in i[1:] for i in ids)


def test_cluster_id_rejects_a_bad_count():
    done = subprocess.run(["bash", str(SCRIPT), "cluster-id", "-5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cluster-id takes a count" in done.stderr
