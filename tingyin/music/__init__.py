"""Music tagging: musicnn taggers (ONNX), a music detector, and the SAMI MusicTagging core.

Entry points: :func:`tingyin.music.tagger.tag_music`, :func:`tingyin.music.tagger.music_embedding`,
:func:`tingyin.music.detector.is_music` and :func:`tingyin.music.service.analyse_music`.
"""
