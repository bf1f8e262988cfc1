"""`ldm serve`: an A1111-compatible HTTP API (/sdapi/v1) and a small local page, over one loaded model.

    requests.py   A1111 request fields -> GenerateSettings (and the fields not wired yet)
    samplers.py   A1111 sampler / scheduler names <-> ldm scheduler names
    engine.py     the loaded model; runs one job, returns PNGs with ldm's metadata
    worker.py     one job at a time on a worker thread, a bounded queue, progress and interrupt
    responses.py  A1111 response bodies (images, parameters, info)
    app.py        the FastAPI routes, auth, error bodies and size limit
    server.py     uvicorn, signals, the listening socket
"""
