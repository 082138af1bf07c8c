# syntax=docker/dockerfile:1
# CPU image of the vdr_app web app, for a Hugging Face Docker Space or any container host.
#
#   docker build -t vdr-app .
#   docker run --rm -p 7860:7860 -v vdr-data:/data vdr-app          # http://localhost:7860
#   docker run ... -e VDR_MODEL=vidore/colqwen2.5-v0.2 vdr-app        # another checkpoint
#
# Data (SQLite store with page images) lives in $VDR_DATA_DIR and downloaded checkpoints in
# $HF_HOME, both under /data: mount a volume there (or enable a Space's persistent storage,
# which is mounted at /data) to keep them across restarts.
FROM python:3.11-slim

# poppler-utils: pdf2image renders pages with pdftoppm / pdfinfo. tesseract-ocr and its packs: OCR
# of scans in the scripts rapidocr's bundled model cannot read (Cyrillic, Arabic, Korean; see
# docs/ocr.md). Add tesseract-ocr-<code> packs here for other scripts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends poppler-utils \
       tesseract-ocr tesseract-ocr-rus tesseract-ocr-ara tesseract-ocr-kor \
    && rm -rf /var/lib/apt/lists/*

# Spaces run the container as UID 1000; use the same user everywhere.
RUN useradd -m -u 1000 user \
    && mkdir -p /data \
    && chown user:user /data
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    VDR_DATA_DIR=/data/vdr \
    HF_HOME=/data/huggingface \
    VDR_HOST=0.0.0.0 \
    VDR_PORT=7860
WORKDIR $HOME/app

# torch first, from the PyTorch CPU index: PyPI's Linux torch 2.13.0 wheel is a CUDA build that
# pulls ~3 GB of nvidia-* wheels a CPU container never uses. `torch==2.13.0+cpu` satisfies the
# `torch==2.13.0` pin of requirements.txt and constraints.txt (a local version label matches its
# plain version), so the next step keeps it; the same holds for torchvision 0.28.0, the release
# paired with torch 2.13. For a GPU image, drop this step: requirements.txt then installs PyPI's
# CUDA torch.
COPY --chown=user requirements.txt constraints.txt ./
RUN pip install --user --no-deps --index-url https://download.pytorch.org/whl/cpu -c constraints.txt torch torchvision

# Requirements before the code, so editing the code does not reinstall packages. constraints.txt
# pins every package to the versions the tests ran with (requirements.txt does not name it: the
# Spaces builder installs requirements.txt alone, so the pins are given here).
RUN pip install --user -c constraints.txt -r requirements.txt

COPY --chown=user . .

EXPOSE 7860
CMD ["python", "app.py"]
