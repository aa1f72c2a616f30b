# The lfl image: used by both the web server and the workers (see docker-compose.yml).
# PyTorch wheels from PyPI bring their CUDA runtime; the host needs the NVIDIA driver and container toolkit.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are served by the ASGI app itself (LFL_SERVE_STATIC, on by default).
RUN useradd --create-home lfl && mkdir -p /var/lib/lfl && chown lfl /var/lib/lfl
USER lfl

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "lfl_web.asgi:application"]
