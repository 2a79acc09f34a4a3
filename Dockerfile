# talkdit for GPU clusters: CUDA PyTorch 2.11 base, talkdit installed with its gpu and data extras, non-root user.
# Build: docker build -t talkdit .   Run: docker run --gpus all -v /data:/data talkdit python -m trainer.train ...
# torch 2.11's PyPI wheels are built against CUDA 13.0; set BASE_IMAGE to another 2.11 tag to change CUDA.
ARG BASE_IMAGE=pytorch/pytorch:2.11.0-cuda13.0-cudnn9-devel
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WANDB_MODE=offline

# ffmpeg for media work; libgl1 and libglib2.0-0 for OpenCV (MediaPipe); build tools for DeepSpeed ops.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 build-essential git \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 --shell /bin/bash talkdit
WORKDIR /opt/talkdit
COPY . .

# Extras (setup.cfg): gpu = DeepSpeed + flash attention (yunchang's ring attention), data = MediaPipe, scenedetect
# and OpenCV for data preparation and evaluation. --build-arg EXTRAS=gpu gives a training-only image.
ARG EXTRAS=gpu,data
# flash-attn compiles against the installed CUDA torch (no prebuilt wheel for every torch/CUDA pair): no build
# isolation, hence its build tools first; MAX_JOBS bounds the compiler's memory.
ARG MAX_JOBS=4
# The base image ships torch 2.11.0; pinning the trio again keeps pip from swapping it for another build.
# talkdit is installed as a package (configs included), not as an editable checkout.
RUN python -m pip install "torch==2.11.0" "torchaudio==2.11.0" "torchvision==0.26.0" \
    "setuptools>=70.1" wheel packaging ninja psutil \
 && MAX_JOBS=${MAX_JOBS} python -m pip install --no-build-isolation ".[${EXTRAS}]" \
 && python -c "import torch, trainer; print('talkdit image: torch', torch.__version__, 'cuda', torch.version.cuda)"

USER talkdit
ENV HOME=/home/talkdit
# Runs write below the working folder (run_root=runs), so work in the user's home, not in the source copy.
WORKDIR /home/talkdit
CMD ["python", "-m", "trainer.train", "--help"]
