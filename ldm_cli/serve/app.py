"""The FastAPI app: A1111's /sdapi/v1 routes over one Engine and Worker, and the page at `/`."""

from __future__ import annotations

import asyncio
import binascii
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Body, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ldm_cli.errors import LdmError, UsageError, one_line
from ldm_cli.serve import listings, responses
from ldm_cli.serve.guard import Guard
from ldm_cli.serve.request_fields import RequestError, check_options, with_options
from ldm_cli.serve.requests import Img2ImgRequest, Txt2ImgRequest, a1111_message, build_job, decode_base64_image
from ldm_cli.serve.samplers import sampler_items, scheduler_items
from ldm_cli.serve.worker import QueueFull, ShuttingDown, Worker

PAGE = Path(__file__).resolve().parent.parent / "assets" / "serve" / "index.html"


@dataclass
class AppSettings:
    scratch: Path  # init images pass through here
    out: Path = Path("outputs")  # where save_images writes
    credentials: dict[str, str] = field(default_factory=dict)  # user -> password; empty: no auth
    max_body_bytes: int = 50 * 2**20
    retry_after_s: int = 5
    allowed_hosts: frozenset[str] | None = None  # Host names answered; None: any


def error_body(error: str, detail, errors="", body="") -> dict:
    """A1111's error shape (modules/api/api.py handle_exception)."""
    return {"error": error, "detail": detail, "body": body, "errors": errors}


def _describe(problem: dict) -> str:
    if problem.get("type") == "json_invalid":
        return f"the body is not valid JSON (at character {problem['loc'][-1]}): {problem.get('msg')}"
    return f"{'.'.join(str(p) for p in problem.get('loc', ())[1:]) or 'body'}: {problem.get('msg')}"


class ClientGone(Exception):
    """The client closed the connection while its job waited; nobody is left to answer."""


async def _unless_disconnected(http: Request, future):
    """The job's result; if the client leaves first, cancel the job (dropped while still queued)."""
    waiter = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(_disconnect(http))
    done, _ = await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        watcher.cancel()
        return waiter.result()
    waiter.cancel()  # cancels the queued job; a running one finishes and its result is dropped
    raise ClientGone()


async def _disconnect(http: Request) -> None:
    while (await http.receive())["type"] != "http.disconnect":
        pass


async def _empty_list() -> list:
    return []


async def _nothing() -> None:
    return None


def create_app(worker: Worker, settings: AppSettings) -> FastAPI:
    engine = worker.engine
    app = FastAPI(title="ldm serve", description="A1111-compatible API of ldm", version="1")
    app.add_middleware(Guard, credentials=settings.credentials, max_body_bytes=settings.max_body_bytes,
                       allowed_hosts=settings.allowed_hosts)
    options = {"sd_model_checkpoint": engine.title, "sd_checkpoint_hash": engine.sha256 or None, "sd_vae": engine.vae_name() or "Automatic",
               "CLIP_stop_at_last_layers": 1, "samples_format": "png", "eta_noise_seed_delta": 0,
               "token_merging_ratio": 0.0}

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return JSONResponse(status_code=422, content=error_body("RequestError", str(exc), str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        for problem in problems:
            problem.pop("input", None)  # may be a whole base64 image
            problem.pop("ctx", None)
        detail = "; ".join(_describe(problem) for problem in problems)
        return JSONResponse(status_code=422, content=error_body("RequestValidationError", detail, problems))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse(status_code=exc.status_code, headers=exc.headers,
                            content=error_body("HTTPException", exc.detail, f"{exc.status_code}: {exc.detail}"))

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return JSONResponse(status_code=500, content=error_body(type(exc).__name__, "", one_line(exc)))

    async def generate(request: Txt2ImgRequest, http: Request):
        job = await run_in_threadpool(build_job, with_options(request, options), engine.model_settings, settings.scratch, engine.knows, settings.out,
                                      engine.defaults())
        try:
            future = worker.submit(job)
        except QueueFull as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(settings.retry_after_s)}) from None
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None
        try:
            result = await _unless_disconnected(http, future)
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None
        except UsageError as exc:  # found once the model is known (clip skip past its layers, hires size)
            raise RequestError(a1111_message(one_line(exc).removeprefix("ldm: error: "), settings.scratch)) from None
        except LdmError as exc:
            raise HTTPException(500, one_line(exc)) from None
        return await run_in_threadpool(responses.generation_response, request, result, engine)

    @app.post("/sdapi/v1/txt2img")
    async def txt2img(request: Txt2ImgRequest, http: Request):
        return await generate(request, http)

    @app.post("/sdapi/v1/img2img")
    async def img2img(request: Img2ImgRequest, http: Request):
        return await generate(request, http)

    @app.get("/sdapi/v1/progress")
    async def progress(skip_current_image: bool = False):
        snapshot = worker.progress.snapshot()
        snapshot = await run_in_threadpool(responses.progress_response, snapshot, skip_current_image)
        snapshot["queued"] = worker.queued
        return snapshot

    @app.post("/sdapi/v1/interrupt")
    async def interrupt():
        worker.interrupt()
        return {}

    @app.post("/sdapi/v1/skip")
    async def skip():
        worker.skip()
        return {}

    @app.get("/sdapi/v1/options")
    async def get_options():
        return options

    @app.post("/sdapi/v1/options")
    async def set_options(new: dict = Body(...)):
        wanted = new.get("sd_model_checkpoint")
        if wanted is not None and not engine.knows(str(wanted)):
            raise RequestError(f"sd_model_checkpoint {wanted!r}: not the loaded model {engine.title!r}; "
                               "ldm serve keeps one model (restart it with --model to serve another)")
        check_options(new, engine.vae_name())
        options.update({k: v for k, v in new.items() if k != "sd_model_checkpoint"})
        return None

    @app.get("/sdapi/v1/sd-models")
    async def sd_models():
        return [engine.model_item()]

    @app.get("/sdapi/v1/samplers")
    async def samplers():
        return sampler_items()

    @app.get("/sdapi/v1/schedulers")
    async def schedulers():
        return scheduler_items()

    @app.get("/sdapi/v1/loras")
    async def loras():
        return await run_in_threadpool(listings.lora_items, engine.lora_dirs)

    @app.get("/sdapi/v1/embeddings")
    async def embeddings():
        return await run_in_threadpool(listings.embedding_items, engine.embeddings_dirs, engine.model_settings.allow_pickle,
                                      engine.components.text_encoder.config.hidden_size)

    @app.get("/sdapi/v1/sd-vae")
    async def sd_vae():
        return listings.vae_items(engine.model_settings.vae)

    @app.get("/sdapi/v1/scripts")
    async def scripts():
        return {"txt2img": [], "img2img": []}

    @app.get("/sdapi/v1/prompt-styles")
    async def prompt_styles():
        return []

    @app.get("/sdapi/v1/upscalers")
    async def upscalers():  # the pixel upscaler hr_upscaler may name (A1111's UpscalerItem)
        return [{"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None, "scale": 4}]

    @app.get("/sdapi/v1/latent-upscale-modes")
    async def latent_upscale_modes():
        return [{"name": "Latent"}]

    for path in ("hypernetworks", "face-restorers"):  # none: a client's menus stay empty
        app.add_api_route(f"/sdapi/v1/{path}", _empty_list, methods=["GET"])
    for path in ("refresh-checkpoints", "refresh-loras", "refresh-vae"):  # nothing on disk to rescan
        app.add_api_route(f"/sdapi/v1/{path}", _nothing, methods=["POST"])

    @app.get("/internal/ping")
    async def ping():  # what A1111 answers to liveness probes
        return {}

    @app.post("/sdapi/v1/png-info")
    async def png_info(body: dict = Body(...)):
        text = body.get("image")
        if not isinstance(text, str) or not text.strip():
            raise RequestError("image: give a base64 PNG")
        data = decode_base64_image(text.strip(), "image")
        try:
            return await run_in_threadpool(responses.png_info, data)
        except (OSError, ValueError, binascii.Error):
            raise RequestError("image: not a readable image") from None

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app
