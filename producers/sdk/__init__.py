"""The usage SDK: UsageProducer (events to Kinesis), Bedrock client instrumentation and the quota check.

Importing it starts nothing and connects nowhere; see each module for why it is built the way it is.
"""

from producers.sdk.bedrock import instrument, request_metadata
from producers.sdk.bedrock_usage import TokenUsage
from producers.sdk.config import AggregationScope, OverflowPolicy, ProducerConfig
from producers.sdk.producer import KinesisPutClient, ProducerStats, UsageProducer
from producers.sdk.quota import QuotaChecker, QuotaStatusReader

__all__ = [
    "AggregationScope",
    "KinesisPutClient",
    "OverflowPolicy",
    "ProducerConfig",
    "ProducerStats",
    "QuotaChecker",
    "QuotaStatusReader",
    "TokenUsage",
    "UsageProducer",
    "instrument",
    "request_metadata",
]
