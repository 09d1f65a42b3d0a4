"""scripts/mnist_kernel.py --smoke: runs end to end and ends with its JSON metrics line."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mnist_kernel_smoke(tmp_path):
    out = tmp_path / "m.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "mnist_kernel.py"), "--smoke", "--quiet",
                        "--json-out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics == json.loads(out.read_text())
    for key in ("test_error", "train_error", "n_train", "relative_residual", "rkhs_norm", "seconds", "peak_rss_gb"):
        assert key in metrics
    assert metrics["relative_residual"] <= 1e-10  # exact by the project's definition
    assert metrics["train_error"] == 0.0  # an exact interpolant of one-hot targets fits every label
    assert 0.0 <= metrics["test_error"] <= 1.0 and metrics["ridge"] == 0.0
