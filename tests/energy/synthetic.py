"""Models and counters whose every reading the tests dictate."""

from gateway.pool import ModelSpec

SMALL = ModelSpec(name="small", energy_mj=100.0, error_rate=10.0)
BIG = ModelSpec(name="big", energy_mj=300.0, error_rate=5.0)


class ScriptedCounter:
    """A cumulative energy counter whose readings the test dictates."""

    name = "synthetic"

    def __init__(self) -> None:
        self.joules = 0.0
        self.closed = False

    def read_joules(self) -> float:
        return self.joules

    def close(self) -> None:
        self.closed = True


class FlakyCounter(ScriptedCounter):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def read_joules(self) -> float:
        if self.down:
            raise OSError("GPU fell off the bus")
        return self.joules
