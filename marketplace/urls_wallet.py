"""URL routes of the wallet: pages in ``urlpatterns``, REST endpoints in ``api_urlpatterns``
(mounted under /api/v1/ by marketplace/urls.py)."""

from django.urls import path

from marketplace.views import wallet

urlpatterns: list = [
    path("wallet/", wallet.wallet, name="wallet"),
    path("wallet/statement/", wallet.wallet_statement, name="wallet-statement"),
    path("wallet/buy/", wallet.wallet_buy, name="wallet-buy"),
    path("wallet/buy/success/", wallet.wallet_buy_success, name="wallet-buy-success"),
    path("wallet/auto-topup/", wallet.wallet_auto_topup, name="wallet-auto-topup"),
    path("wallet/agents/transfer/", wallet.wallet_agent_transfer, name="wallet-agent-transfer"),
]
api_urlpatterns: list = [
    path("wallet/", wallet.WalletBalanceApi.as_view(), name="api-wallet"),
    path("wallet/statement/", wallet.WalletStatementApi.as_view(), name="api-wallet-statement"),
    path("wallet/transfers/", wallet.WalletTransferApi.as_view(), name="api-wallet-transfers"),
]
