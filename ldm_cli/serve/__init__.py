"""`ldm serve`: an A1111-compatible HTTP API (/sdapi/v1) and a small local page, over one loaded model.

    requests.py   A1111 request fields -> GenerateSettings, as ldm generate's flags (and the fields ldm cannot honour)
    request_fields.py  hires, variation, clip skip, ENSD, inpainting fields; the settings /options may set
    samplers.py   A1111 sampler / scheduler names -> --scheduler / --schedule-type (schedule_types.py)
    engine.py     the loaded model (reloaded per LoRA set); runs one job as txt2img.run does, PNGs with ldm's metadata
    listings.py   /loras, /embeddings, /sd-vae: the files --lora-dir, --embeddings-dir and --vae name
    worker.py     one job at a time on a worker thread, a bounded queue, progress and interrupt
    responses.py  A1111 response bodies (images, parameters, info)
    app.py        the FastAPI routes, auth, error bodies and size limit
    server.py     uvicorn, signals, the listening socket
"""
