"""The GGUF export's settings, Dagster- and numpy-free so loading the definitions stays light."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class GGUFOptions:
    """The export's one setting and its one default (Dagster-free; ``GGUFConfig`` takes it from here).

    ``dtype`` "auto": F32 up to 50M parameters (llama.cpp's logits match torch's within 1e-3), F16 above
    (half the size; llama.cpp computes in F16 on most backends anyway). "f32"/"f16" force one.
    """

    dtype: str = "auto"
