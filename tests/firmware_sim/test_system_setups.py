"""`make run ALIPAY=... WECHAT=...` (python -m firmware_sim.system): a combination a hospital cannot be in
is refused before anything starts, saying which go together."""

from __future__ import annotations

import subprocess
import sys


def test_third_party_alipay_with_a_direct_wechat_merchant_is_refused_before_anything_starts(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "firmware_sim.system", "--headless", "--workdir", str(tmp_path / "run"),
                           "--wechat", "v2", "--alipay", "third-party"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "ALIPAY=third-party goes with WECHAT=v2-provider or v3-provider" in done.stderr
    assert not (tmp_path / "run" / "channel-sandbox").exists()  # nothing was started
