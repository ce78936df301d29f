"""The one settings class: every knob psyqa has, read from PSYQA_* variables and .env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from assistant.errors import SettingsError

# Identity of the bundled embedding model; recorded on the collection so that an index built
# with another model is detected instead of mixed.
BUNDLED_MODEL = "all-MiniLM-L6-v2"


class LLMSettings(BaseSettings):
    """Optional generative backend (PSYQA_LLM__*)."""

    model_config = SettingsConfigDict(extra="ignore")

    backend: Literal["extractive", "ollama", "openai"] = Field(
        "extractive", description="Answer backend: extractive (offline default), ollama or openai"
    )
    model: str = Field("llama3.1", description="Model name on the LLM server")
    base_url: str | None = Field(None, description="Server URL (Ollama or OpenAI-compatible)")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable that holds the API key"
    )
    timeout_s: float = Field(30.0, description="Seconds before a slow model server is abandoned")


class Settings(BaseSettings):
    """Effective configuration. Build it once at the edge and pass it in."""

    model_config = SettingsConfigDict(
        env_prefix="PSYQA_", env_file=".env", env_nested_delimiter="__", extra="ignore"
    )

    # Storage
    data_dir: Path = Field(
        Path("data"), description="Everything psyqa writes lives here: index/ (derived, rebuildable "
        "from the corpus) and user/ (feedback and saved conversations, never touched by a rebuild)")
    corpus_dir: Path = Field(Path("corpus"), description="Default corpus root for ingest")
    collection: str = Field("psyqa", description="Chroma collection name")
    chroma_host: str | None = Field(
        None, description="Chroma server host; unset = embedded store under data_dir"
    )
    chroma_port: int = Field(8000, description="Chroma server port")
    ingest_lease_s: float = Field(
        60.0, description="Server mode: an ingest whose heartbeat is older than this is taken over")

    # Embedding and chunking (these shape the vectors: changing them needs --rebuild)
    embedding_model: str = Field(BUNDLED_MODEL, description="Embedding model (bundled package)")
    max_tokens: int = Field(
        256, description="Word-piece limit per embedded chunk, title/section prefix included"
    )
    overlap_sentences: int = Field(1, description="Sentences carried into the next chunk")
    embed_batch_size: int = Field(64, description="Chunks per encode() batch")

    # Ingest limits
    max_file_mb: float = Field(10.0, description="Files larger than this are refused")

    # Retrieval and answers
    top_k: int = Field(8, description="Passages handed to the answerer")
    candidates: int = Field(100, description="Candidates per retriever before fusion")
    lexical_weight: float = Field(0.4, description="Weight of BM25 (scaled to the best candidate) next to cosine")
    prf_weight: float = Field(1.0, description="Dense pseudo-relevance feedback: weight of the top-3 mean")
    max_per_doc: int = Field(3, description="At most this many passages from one document")
    min_evidence: float = Field(
        0.7, description="Abstain when the best sentence's answerability (0-1) is below this"
    )
    max_question_chars: int = Field(2000, description="Longest question accepted")

    # App
    app_host: str = Field("127.0.0.1", description="Address the chat app binds to")
    app_port: int = Field(8501, description="Port of the chat app")

    llm: LLMSettings = Field(default_factory=LLMSettings)

    @property
    def index_dir(self) -> Path:
        """Derived data: the embedded Chroma store, BM25 files, the ingest lock. Everything in it
        can be rebuilt from the corpus; `psyqa clean` (make clean-data) removes it."""
        return self.data_dir / "index"

    @property
    def user_dir(self) -> Path:
        """What people wrote (feedback, saved conversations): nothing that rebuilds or cleans the
        index touches it. Back it up with 'psyqa feedback backup'."""
        return self.data_dir / "user"

    @property
    def chroma_dir(self) -> Path:
        return self.index_dir / "chroma"

    @property
    def server_mode(self) -> bool:
        return bool(self.chroma_host)


def load_settings(**overrides) -> Settings:
    """`Settings()` for the edges (CLI, app): a bad PSYQA_* value becomes one line that names the
    variable and what it should be, instead of a pydantic traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            var = "PSYQA_" + "__".join(x.upper() for x in loc) if loc else "a PSYQA_ variable"
            problems.append(f"{var}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("Invalid setting " + "; ".join(problems)
                            + ". Fix the value (see 'psyqa config' for the defaults) or unset it.") from None
