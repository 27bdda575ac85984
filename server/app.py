"""The Litestar app of one node: `create_app(config)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from server.auth import admin_token, record_refusal, require_admin
from server.config import SiteConfig
from server.deps import DEPENDENCIES
from server.errors import internal_error, problem_details_plugin
from server.node import Node
from server.routes.audit import AuditController
from server.routes.auth import AuthController, DeviceController
from server.routes.consents import ConsentController
from server.routes.customers import CustomerController
from server.routes.health import HealthController
from server.routes.keys import EnrollController, KeyAdminController, NodeKeysController
from server.routes.offboarding import OffboardingController
from server.routes.policy import PolicyController
from server.routes.purge_receipts import PurgeReceiptController
from server.routes.reports import ReportController
from server.routes.retention import RetentionController
from server.routes.sync import SyncController, SyncNowController
from server.routes.users import UserAdminController
from server.routes.work import ComplaintController, CustomerWorkController, InboxController, TaskController

API_VERSION = "0.1.0"


def create_app(config: SiteConfig, *, passphrase: str = "", replicate: bool = True) -> Litestar:
    """The node's app: opens its keystore (with ``passphrase``) and store at
    startup, syncs in the background (``replicate``), sweeps the work rules and,
    at HQ, purges expired rows on schedule, and closes everything at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        node = await Node.open(config, passphrase)
        app.state.node = node
        node.start_key_steward()
        node.start_audit_checkpoints()
        node.start_retention()
        node.start_work_rules()
        if replicate:
            node.start_replication()
        try:
            yield
        finally:
            await node.close()

    operator = Router(
        path="/",
        route_handlers=[SyncNowController, EnrollController, KeyAdminController, UserAdminController,
                        PolicyController, PurgeReceiptController, OffboardingController, RetentionController],
        guards=[require_admin],
    )
    return Litestar(
        # the customers API takes users and the operator (server/access.py)
        route_handlers=[SyncController, HealthController, NodeKeysController, AuthController, DeviceController,
                        CustomerController, ConsentController, AuditController, InboxController, TaskController,
                        ComplaintController, CustomerWorkController, ReportController, operator],
        dependencies=DEPENDENCIES,
        lifespan=[lifespan],
        plugins=[problem_details_plugin()],
        exception_handlers={Exception: internal_error},
        after_exception=[record_refusal],
        openapi_config=OpenAPIConfig(
            title="Outpost node API",
            version=API_VERSION,
            description="One Outpost node: sync endpoints for the nodes below it, and the operation's API.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin()],
            components=Components(security_schemes={
                "AccessToken": SecurityScheme(
                    type="http", scheme="bearer", bearer_format="JWT",
                    description="An access token from /auth/sign-in (EdDSA-signed by the issuing node)",
                ),
                "OperatorToken": SecurityScheme(
                    type="http", scheme="bearer",
                    description="The node's operator token (OUTPOST_ADMIN_TOKEN): the deployment's machine "
                                "credential, with full access",
                ),
            }),
        ),
        state=State({"admin_token": admin_token()}),
        request_max_body_size=config.sync.max_body_bytes,
        debug=False,
        logging_config=None,  # server.logging configures the root logger
    )
