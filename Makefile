# talkdit: one setup command, then `make demo` (the main job) and `make test` (the suite).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# ffmpeg: ffprobe/ffmpeg for media work; libgl1 + libglib2.0-0: OpenCV (pulled by MediaPipe) loads them;
# slurm-wlm + munge: the single-node SLURM the launch tests submit real jobs to (launch/local_slurm.py).
SYSTEM_PACKAGES := ffmpeg libgl1 libglib2.0-0 slurm-wlm munge
# The torch trio is pinned together (DESIGN §2); installed first so nothing else picks another torch.
TORCH_TRIO := torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0

.PHONY: setup system-packages venv demo test test-gpu lint format bench bench-lipsync clean

setup: system-packages venv  ## system packages, .venv, pinned torch, talkdit editable with the data and dev extras
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_TRIO)
	$(BIN)/python -m pip install --quiet -e ".[data,dev]"
	$(BIN)/python -c "import torch, torchaudio, torchvision, diffusers, mediapipe, cv2, trainer; \
	print(f'talkdit ready: torch {torch.__version__}, torchaudio {torchaudio.__version__}, torchvision {torchvision.__version__}')"

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages present: $(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "missing system packages:$$missing (install them as root, then rerun make setup)"; exit 1; fi

venv:
	@$(PYTHON) -c "import sys; assert sys.version_info >= (3, 11), 'talkdit needs Python >= 3.11, found ' + sys.version"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)

demo:  ## generated corpus -> shards -> stage 1 -> export -> stage 2 -> export (tiny model, CPU)
	$(BIN)/python -m launch.demo

test:  ## the test suite (CPU; GPU tests are deselected, see test-gpu)
	$(BIN)/python -m pytest

test-gpu:  ## the GPU tests only (needs CUDA)
	$(BIN)/python -m pytest -m gpu

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench:  ## benchmarks print JSON ratios against a baseline measured in the same run
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/data_prep_throughput.py
	$(BIN)/python benchmarks/loader_throughput.py
	$(BIN)/python benchmarks/sampler_overhead.py
	$(BIN)/python benchmarks/tapsf_memory.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/dub_overhead.py

# The demo at the budget whose VAE passes the benchmark's check (192 + 192 people, a 17,600-step VAE fit with its
# decoder then refined for 3,000 steps on both corpora, 6,000 stage-1 steps; about 3.5 hours on 2 AVX2-only CPU
# cores, reused from demo_lipsync/ afterwards), then the lip-sync benchmark, its two ablations, audio guidance 3
# and 4, and the dub pasted through the mouth's reach only (--paste mouth; about a minute each).
LIPSYNC_DEMO = out_dir=demo_lipsync num_videos=192 vae_clip_steps=16800 vae_decoder_steps=3000 stage1_steps=6000

bench-lipsync:  ## the lip-sync benchmark on a tiny base fitted long enough to show mouths (about 3.5 hours on 2 cores)
	$(BIN)/python -m launch.demo $(LIPSYNC_DEMO)
	for a in none shuffled_audio no_adapter; do \
		$(BIN)/python benchmarks/lipsync_learning.py --out demo_lipsync --ablation $$a > demo_lipsync/.lipsync_$$a.json \
			&& mv demo_lipsync/.lipsync_$$a.json demo_lipsync/lipsync_$$a.json || exit 1; \
	done
	for g in 3 4; do \
		$(BIN)/python benchmarks/lipsync_learning.py --out demo_lipsync --audio-guidance $$g > demo_lipsync/.lipsync_none_g$$g.json \
			&& mv demo_lipsync/.lipsync_none_g$$g.json demo_lipsync/lipsync_none_g$$g.json || exit 1; \
	done
	$(BIN)/python benchmarks/lipsync_learning.py --out demo_lipsync --paste mouth > demo_lipsync/.lipsync_mouth.json \
		&& mv demo_lipsync/.lipsync_mouth.json demo_lipsync/lipsync_mouth.json
	cat demo_lipsync/lipsync_none.json

clean:
	rm -rf demo_out demo_lipsync runs .pytest_cache
