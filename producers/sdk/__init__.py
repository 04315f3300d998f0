"""The usage SDK: UsageProducer (events to Kinesis), Bedrock client instrumentation and the quota check.

Importing it starts nothing and connects nowhere; see each module for why it is built the way it is.
"""

from producers.sdk.config import OverflowPolicy, ProducerConfig
from producers.sdk.producer import KinesisPutClient, ProducerStats, UsageProducer

__all__ = ["KinesisPutClient", "OverflowPolicy", "ProducerConfig", "ProducerStats", "UsageProducer"]
