"""Model backends behind the gateway's ``ModelBackend`` port: Bedrock Converse, SageMaker endpoints, simulated.

Each module imports its SDK only when a backend is built, so importing the gateway never loads boto3.
"""
