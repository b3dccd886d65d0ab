"""One lock around every model load in the process.

transformers is not safe to load from two threads at once: its lazy module can fail an import that races
another (`cannot import name 'AutoModelForMaskedLM'`), and its loader swaps process-wide state while it
materialises weights, so a concurrent load can come back with weights left on the meta device or never
read (seen when the API's warm-up thread loaded SPLADE while a request loaded SmolLM2). Loads are rare and
slow anyway; serialising them costs nothing a user would notice.
"""

from __future__ import annotations

import threading

model_load_lock = threading.RLock()
