"""polrl.devices: one host device per core (a power of two), and a user's XLA_FLAGS wins."""
from polrl import devices


def test_power_of_two_not_above_the_core_count():
    assert [devices.host_devices_per_core(n) for n in (1, 2, 3, 4, 6, 8, 12, 16)] == [1, 2, 2, 4, 4, 8, 8, 16]
    assert devices.host_devices_per_core() <= devices.cores()


def test_use_every_core_sets_the_flag_unless_the_user_did(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    count = devices.use_every_core()
    assert count == devices.host_devices_per_core()
    import os

    assert os.environ["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {devices.FLAG}={count}"
    monkeypatch.setenv("XLA_FLAGS", f"{devices.FLAG}=3")
    assert devices.use_every_core() is None
    assert os.environ["XLA_FLAGS"] == f"{devices.FLAG}=3"
