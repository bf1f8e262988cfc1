"""Where sampling starts: noise, init image (img2img), masked init (inpaint, outpaint), hires pass."""
