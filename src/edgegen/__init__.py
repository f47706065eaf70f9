"""edgegen: generative AI and large AI models at the wireless network edge."""

__version__ = "0.1.0"
