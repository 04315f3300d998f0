"""Producers: everything that turns a model call into a UsageEvent on the Kinesis stream.

``producers.sdk`` is the library an application embeds (UsageProducer, Bedrock client instrumentation, the
quota check); ``producers.gateway`` is the multi-tenant HTTP gateway built on it. Importing this package does
nothing else.
"""
