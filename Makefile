# video-pipeline: `make demo` and `make test` are the only commands a fresh clone needs.
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
SAMPLE := sample_videos/demo-720p.mp4

NODE   := tests/node
.PHONY: install ffmpeg chromium node demo check test lint typecheck mutation bench clean

install: ffmpeg chromium node $(VENV)/.installed $(NODE)/node_modules/.installed

# Debian's ffmpeg (ffmpeg + ffprobe), installed only when ffprobe is missing.
ffmpeg:
	@command -v ffprobe >/dev/null 2>&1 || { \
	  echo "ffprobe not found: installing Debian's ffmpeg"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ffmpeg; }

# Debian's chromium, installed only when missing: the report tests render pages in it
# (headless); the program itself never needs a browser.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "chromium not found: installing Debian's chromium"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# Node.js and npm (Debian's) when missing: the tests run Clarifai's Node.js client.
node:
	@command -v npm >/dev/null 2>&1 || { \
	  echo "npm not found: installing Debian's nodejs and npm"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }

# Clarifai's Node.js client, pinned by the lock file (its install scripts are not needed).
$(NODE)/node_modules/.installed: $(NODE)/package.json $(NODE)/package-lock.json
	cd $(NODE) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,sdk]'
	touch $@

# A 2-minute 720p sample made with lavfi sources (over the 10 MB byte limit); never committed.
# Quality-based (CRF) with a pinned thread count and bit-exact muxing: the same bytes on every
# machine with this ffmpeg, so the README's examples are what you see.
$(SAMPLE):
	@mkdir -p sample_videos
	ffmpeg -v error -nostdin -y -f lavfi -i "testsrc2=size=1280x720:rate=30,noise=alls=6:allf=t" \
	  -f lavfi -i "sine=frequency=330:sample_rate=44100" -t 120 -shortest \
	  -c:v libx264 -preset veryfast -crf 26 -g 90 -threads 2 -c:a aac -b:a 96k \
	  -fflags +bitexact -flags:v +bitexact -flags:a +bitexact -movflags +faststart $@.part.mp4
	mv $@.part.mp4 $@

demo: install $(SAMPLE)
	$(BIN)/video-pipeline probe $(SAMPLE)
	$(BIN)/video-pipeline plan $(SAMPLE)
	$(BIN)/video-pipeline run $(SAMPLE) --out demo-out
	@echo
	@echo "Timeline: $$(ls demo-out/*/timeline.json)"
	@echo "Frames:   $$(ls demo-out/*/frames.csv)"
	@echo "Segments: $$(ls demo-out/*/segments.json)"
	$(BIN)/video-pipeline report demo-out

lint: install
	$(BIN)/ruff check pipeline tests bench

typecheck: install
	$(BIN)/mypy
	$(BIN)/mypy --strict pipeline

# The fast tier, for the edit-test loop (under a minute): lint, types and the pure tests, which
# run in the pytest process alone (no ffmpeg, server, browser, Node.js, moto or Dask; the
# tiers: tests/tiers.py). Needs only the Python environment.
check: $(VENV)/.installed
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q -m pure

# Everything CI must prove: every test, whatever its tier.
# Four workers, each taking whole test files (module fixtures start once): ~5 minutes on 2
# cores instead of ~10 serially.
test: install lint typecheck
	$(BIN)/pytest -q -n 4 --dist loadfile

# Mutation testing of the pure core with mutmut (configured in pyproject.toml; scores and the
# survivors judged equivalent in tests/MUTATION.md). A few minutes; not part of `make test`.
# Always from scratch, so the score is the current code's; mutmut's progress goes to a log.
$(VENV)/.mutation-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,sdk,mutation]'
	touch $@

mutation: $(VENV)/.mutation-installed
	rm -rf mutants
	mkdir -p mutants
	@echo "mutmut run (its progress: mutants/run.log)"
	@$(BIN)/mutmut run > mutants/run.log 2>&1 || { tail -n 30 mutants/run.log; exit 1; }
	@grep -a "mutations/second" mutants/run.log || true
	@$(BIN)/mutmut results --all true > mutants/results.txt
	@$(PY) tests/mutation_score.py < mutants/results.txt

bench: install
	$(PY) bench/bench_split.py
	$(PY) bench/bench_scratch.py
	$(PY) bench/bench_local.py
	$(PY) bench/bench_concurrency.py
	$(PY) bench/bench_batch.py
	$(PY) bench/bench_report.py
	$(PY) bench/bench_serve.py
	$(PY) bench/bench_url.py
	$(PY) bench/bench_strategies.py
	$(PY) bench/bench_dask_rate.py

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache bench/out mutants $(NODE)/node_modules
