"""The multi-tenant HTTP gateway: API key -> tenant, quota gate with reserved admission, model backends, and one
UsageEvent per call.

One application (``producers.gateway.app.build_app``), two ways to run it: the AWS Lambda handler behind API
Gateway (``producers.gateway.handler.lambda_handler``) and a local HTTP server for the demo and tests
(``producers.gateway.server.start_local_server``). ``producers.gateway.bootstrap.bootstrap`` builds the app
from ``producers.gateway.settings.Settings``. Nothing is imported here, so importing a submodule stays light.
"""
