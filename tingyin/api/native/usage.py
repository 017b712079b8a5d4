"""The calling app's credentials and its usage per API per day (the console's overview page)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tingyin.api.deps import AuthenticatedRoute, in_thread, native_app
from tingyin.store.apps import AppInfo, secret_key_of
from tingyin.store.quota import USAGE_HISTORY_DAYS, daily_usage

router = APIRouter(prefix="/v1/app", tags=["apps"], route_class=AuthenticatedRoute)


class CredentialsOut(BaseModel):
    app_id: str
    api_key: str
    secret_key: str = Field(description="Baidu client_secret / Qiniu SecretKey")
    app_token_hint: str = Field(
        description="the app_token is stored hashed and cannot be shown again; `tingyin apps rotate` "
        "issues a new set"
    )


@router.get("/credentials", response_model=CredentialsOut)
async def credentials(app: AppInfo = Depends(native_app)) -> CredentialsOut:
    """The app's own keys, for the holder of its token or of a console session."""
    secret = await in_thread(secret_key_of, app.pk)
    return CredentialsOut(
        app_id=app.app_id,
        api_key=app.api_key,
        secret_key=secret,
        app_token_hint="shown once when the app was created or rotated (tingyin apps rotate NAME)",
    )


class ApiUsage(BaseModel):
    api: str = Field(description="baidu_asr, volcano_auc, qiniu, sami, easydl:<suffix>")
    days: dict[str, int] = Field(description='calls per UTC day, "YYYYMMDD" -> count')
    today: int


class UsageOut(BaseModel):
    days: list[str] = Field(description="the days covered, oldest first (UTC, YYYYMMDD)")
    apis: list[ApiUsage]
    qps_limit: int | None
    daily_limit: int | None = Field(description="per API per day; null = unlimited")
    over_daily_limit: list[str] = Field(description="APIs that reached the daily limit today")


@router.get("/usage", response_model=UsageOut)
async def usage(
    days: int = Query(14, ge=1, le=USAGE_HISTORY_DAYS), app: AppInfo = Depends(native_app)
) -> UsageOut:
    """Calls per vendor API per day and the quota state."""
    import time
    from datetime import UTC, datetime

    now = time.time()
    counts = await in_thread(daily_usage, app.pk, days, now)
    covered = [datetime.fromtimestamp(now - i * 86400, UTC).strftime("%Y%m%d") for i in range(days)][::-1]
    today = covered[-1]
    apis = [
        ApiUsage(api=api, days={d: per_day.get(d, 0) for d in covered}, today=per_day.get(today, 0))
        for api, per_day in sorted(counts.items())
    ]
    return UsageOut(
        days=covered,
        apis=apis,
        qps_limit=app.qps_limit,
        daily_limit=app.daily_limit,
        over_daily_limit=[a.api for a in apis if app.daily_limit is not None and a.today >= app.daily_limit],
    )
