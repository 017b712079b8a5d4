"""Jobs as the native API shows them (``GET /v1/jobs/{id}``, and the job answers of the transcription,
dataset-import and training endpoints): one typed result per job kind."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from tingyin.api.deps import AuthenticatedRoute, JobId, in_thread, native_app
from tingyin.speech.pipeline import RecordingResult
from tingyin.store.apps import AppInfo

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=AuthenticatedRoute)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobError(BaseModel):
    code: str
    message: str | None


class _Job(BaseModel):
    id: str
    status: JobStatus
    progress: float = Field(description="0 to 1")
    message: str | None = Field(description="what the job is doing now")
    error: JobError | None = Field(description="why it failed or was cancelled")
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None


# ------------------------------------------------------------------------------------ sound results


class ClassMetricsOut(BaseModel):
    name: str
    precision: float
    recall: float
    f1: float
    support: int = Field(description="held-out clips of this class")
    clips: int = Field(description="clips of this class in the whole dataset")


class MisclassifiedClipOut(BaseModel):
    content_hash: str
    label: str = Field(description="the true class")
    predicted: str
    score: float | None


class FeatureCandidateOut(BaseModel):
    features: str
    loo_accuracy: float = Field(description="leave-one-out accuracy of the ridge head on these features")
    alpha: float = Field(description="the ridge penalty chosen for them")
    predict_cost_ms: float = Field(description="estimated embedding time of a 5 s clip")


class TrainingDetailsOut(BaseModel):
    """How the served recipe was chosen and calibrated (docs/sound.md); empty for older versions."""

    features: str | None = Field(default=None, description="the feature set served")
    selection: list[FeatureCandidateOut] = Field(default_factory=list, description="every candidate tried")
    penalty: float | None = None
    temperature: float | None = Field(default=None, description="calibration temperature of the scores")
    log_loss: float | None = None
    expected_calibration_error: float | None = None
    augmented_clips: int | None = Field(default=None, description="audio variants added to the training set")
    unknown_threshold_default: float | None = Field(
        default=None, description='the open-set threshold "auto" stands for'
    )


class EvaluationReportOut(BaseModel):
    """A trained version's figures on its held-out clips."""

    accuracy: float
    classes: list[str]
    per_class: list[ClassMetricsOut]
    confusion_matrix: list[list[int]] = Field(description="[true class][predicted class] held-out clips")
    class_counts: dict[str, int]
    train_count: int
    held_out_count: int
    macro_f1: float
    small_classes: list[str]
    caution: str | None
    caution_en: str | None
    misclassified: list[MisclassifiedClipOut]
    method: str | None = Field(default=None, description="how the figures were obtained, of which model")
    details: TrainingDetailsOut = Field(default_factory=TrainingDetailsOut)
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per training stage")


class ImportedClipOut(BaseModel):
    label: str
    content_hash: str
    file_name: str
    source_name: str
    size_bytes: int


class DuplicateClipOut(BaseModel):
    source_name: str
    label: str
    content_hash: str
    first_label: str | None = Field(description="the class of the first copy; null: already in the dataset")


class RejectedFileOut(BaseModel):
    name: str
    code: str
    reason: str


class ImportReportOut(BaseModel):
    """What a dataset import did."""

    accepted: list[ImportedClipOut]
    duplicates: list[DuplicateClipOut]
    rejected: list[RejectedFileOut]
    warnings: list[str]
    class_counts: dict[str, int] = Field(description="clips this import added, per class")
    dataset_classes: dict[str, int] = Field(description="the dataset's clips per class after the import")


class TrainingResultOut(BaseModel):
    version_id: int
    report: EvaluationReportOut


# ------------------------------------------------------------------------------------------- jobs


class TranscriptionJobOut(_Job):
    kind: Literal["transcription"]
    result: RecordingResult | None


class DatasetImportJobOut(_Job):
    kind: Literal["dataset_import"]
    result: ImportReportOut | None


class TrainingJobOut(_Job):
    kind: Literal["sound_training"]
    result: TrainingResultOut | None


JobOut = Annotated[TranscriptionJobOut | DatasetImportJobOut | TrainingJobOut, Field(discriminator="kind")]


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_any_job(job_id: JobId, app: AppInfo = Depends(native_app)) -> object:
    """Any job of the app: its state and, once it succeeded, its result (by kind)."""
    from tingyin.jobs import get_job

    return (await in_thread(get_job, job_id, app_pk=app.pk)).as_dict()


__all__ = [
    "DatasetImportJobOut",
    "EvaluationReportOut",
    "JobOut",
    "TrainingJobOut",
    "TranscriptionJobOut",
    "router",
]
