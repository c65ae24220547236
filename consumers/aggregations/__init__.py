"""Aggregations: pure OHLCV, throttle and renko calculators and the consumers publishing them."""

from consumers.aggregations.ohlcv import OHLCV, OHLCVConsumer
from consumers.aggregations.renko import Renko, RenkoConsumer
from consumers.aggregations.throttle import Throttle, ThrottleConsumer

__all__ = ["OHLCV", "OHLCVConsumer", "Renko", "RenkoConsumer", "Throttle", "ThrottleConsumer"]
