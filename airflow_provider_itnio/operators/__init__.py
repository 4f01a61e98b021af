"""Operators of the itniotech provider (re-exported from :mod:`~airflow_provider_itnio.operators.itnio` and
:mod:`~airflow_provider_itnio.operators.batch`)."""

from __future__ import annotations

from airflow_provider_itnio.operators.batch import ItnioBatchSendOperator
from airflow_provider_itnio.operators.itnio import (
    ItnioBaseOperator,
    ItnioSendAudioOperator,
    ItnioSendButtonsOperator,
    ItnioSendContactsOperator,
    ItnioSendDocumentOperator,
    ItnioSendImageOperator,
    ItnioSendListOperator,
    ItnioSendLocationOperator,
    ItnioSendLocationRequestOperator,
    ItnioSendMessageOperator,
    ItnioSendStickerOperator,
    ItnioSendTemplateOperator,
    ItnioSendTextOperator,
    ItnioSendVideoOperator,
)

__all__ = [
    "ItnioBaseOperator",
    "ItnioBatchSendOperator",
    "ItnioSendAudioOperator",
    "ItnioSendButtonsOperator",
    "ItnioSendContactsOperator",
    "ItnioSendDocumentOperator",
    "ItnioSendImageOperator",
    "ItnioSendListOperator",
    "ItnioSendLocationOperator",
    "ItnioSendLocationRequestOperator",
    "ItnioSendMessageOperator",
    "ItnioSendStickerOperator",
    "ItnioSendTemplateOperator",
    "ItnioSendTextOperator",
    "ItnioSendVideoOperator",
]
