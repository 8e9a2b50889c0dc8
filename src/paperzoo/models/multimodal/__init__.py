"""Vision and language (section H, and CLIPSeg of section E): CLIP, CLIPSeg, Show and Tell, Show, Attend and Tell."""
