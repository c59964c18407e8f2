"""``face-expr data``: make, rate, inspect and import conversation datasets."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make, rate, inspect and import conversation datasets",
        description="Datasets of dyadic conversations in shard form (see docs/data.md): generate "
        "synthetic ones, rate them with simulated raters, summarise them, render their media, or "
        "build them from real recordings.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = actions.add_parser(
        "synth", help="generate synthetic conversations into a dataset folder",
        description="Generate N seeded conversations (espeak-ng speech, speaker faces, listener "
        "styles) as shards plus manifest.json. The same arguments give byte-identical shards.",
    )
    synth.add_argument("out", type=Path, help="dataset folder to create")
    synth.add_argument("-n", "--conversations", type=int, default=100, help="how many (default 100)")
    synth.add_argument("--seed", type=int, default=0,
                       help="first conversation seed (default 0): conversation i is made from seed SEED+i, so "
                       "sets whose seed ranges overlap share those conversations; for new data use a "
                       "SEED >= the other set's SEED + N")
    synth.add_argument("--style", default=None, help="force one listener style (default: the mix)")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    synth.set_defaults(func=run_synth)

    rate = actions.add_parser(
        "rate", help="rate every listener in a dataset with a simulated rater panel",
        description="Score each conversation's listener on Empathy, Appropriateness, Engagement and "
        "Naturalness (1-5) with a panel drawn from --panel-seed; writes ratings.json in the folder.",
    )
    rate.add_argument("dataset", type=Path, help="dataset folder")
    rate.add_argument("--panel-seed", type=int, default=1000, help="rater panel seed (default 1000)")
    rate.add_argument("--raters", type=int, default=5, help="raters in the panel (default 5)")
    rate.set_defaults(func=run_rate)

    stats = actions.add_parser(
        "stats", help="summary table and plots of a dataset",
        description="Print splits, hours, speakers, scripts, style and emotion mixes, and rater "
        "scores per style (after `data rate`); write plots to DATASET/stats/.",
    )
    stats.add_argument("dataset", type=Path, help="dataset folder")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=run_stats)

    media = actions.add_parser(
        "media", help="render conversations as video, WAV and rosbags (sqlite3, mcap)",
        description="Render the speaker of each generated conversation with the photo avatar as "
        "640x480 camera video, write the speech as WAV (and muxed into the video), and write rosbag2 "
        "files with camera, audio and ground-truth topics (see docs/data.md).",
    )
    media.add_argument("out", type=Path, help="output folder (one sub-folder per conversation)")
    media.add_argument("--seeds", type=int, nargs="+", default=[0], help="conversation seeds (default 0)")
    media.add_argument("--storage", choices=("sqlite3", "mcap", "both", "none"), default="both",
                       help="rosbag2 storage format(s) (default both)")
    media.add_argument("--raw-images", action="store_true",
                       help="store sensor_msgs/Image in bags instead of JPEG CompressedImage (much larger)")
    media.add_argument("--photo", default=None, help="face photo for the speaker (default: built-in)")
    media.set_defaults(func=run_media)

    build = actions.add_parser(
        "build", help="turn a real recording (video + audio, or a rosbag) into shards",
        description="Build one conversation shard from a recording through the same face tracking, "
        "audio features and ASR the robot runs: either --speaker-video (with --audio WAV, or the "
        "video's own sound via ffmpeg) and optionally --listener-video, or --bag with camera and audio "
        "topics. Adds it to the dataset folder OUT (created if needed).",
    )
    build.add_argument("out", type=Path, help="dataset folder to add the conversation to")
    build.add_argument("--id", default=None, help="conversation id (default: from the input's file name)")
    build.add_argument("--speaker-video", type=Path, help="video of the speaker")
    build.add_argument("--audio", type=Path, help="speaker's audio as WAV (default: the video's sound)")
    build.add_argument("--listener-video", type=Path, help="video of the listener (the actions to learn)")
    build.add_argument("--bag", type=Path, help="rosbag2 folder instead of videos")
    build.add_argument("--camera-topic", default="/camera/image_raw/compressed",
                       help="speaker camera topic in the bag (Image or CompressedImage)")
    build.add_argument("--audio-topic", default="/audio/pcm", help="audio topic in the bag (Int16MultiArray)")
    build.add_argument("--listener-topic", default=None, help="listener camera topic in the bag")
    build.add_argument("--sample-rate", type=int, default=16000, help="audio rate of the bag's PCM (Hz)")
    build.add_argument("--asr", choices=("pocketsphinx", "vosk", "none"), default="pocketsphinx",
                       help="speech recogniser (default pocketsphinx)")
    build.add_argument("--vosk-model", default=None, help="vosk model directory (with --asr vosk)")
    build.add_argument("--split", choices=("train", "val", "test"), default="train", help="split to file it under")
    build.set_defaults(func=run_build)


def _fail(message: str) -> int:
    print(f"face-expr data: error: {message}")
    return 2


def run_synth(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.build_data import SynthSpec, synthesize_dataset

    if args.conversations < 1:
        return _fail(f"--conversations must be >= 1, got {args.conversations}")
    if args.out.exists() and any(args.out.iterdir()):
        return _fail(f"{args.out} exists and is not empty; choose a new folder")
    spec = SynthSpec(args.conversations, seed=args.seed, style=args.style)
    manifest = synthesize_dataset(args.out, spec, workers=max(1, args.workers))
    print(f"wrote {len(manifest.conversations)} conversations to {args.out}/ (data hash "
          f"{manifest.data_hash()[:16]})")
    return 0


def run_rate(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.data_report import RATINGS_FILE, rate_dataset

    result = rate_dataset(args.dataset, args.panel_seed, args.raters)
    print(f"rated {len(result['conversations'])} conversations with {args.raters} raters "
          f"(panel seed {args.panel_seed}); wrote {args.dataset / RATINGS_FILE}")
    if result["skipped_without_timeline"]:
        print(f"skipped {result['skipped_without_timeline']} without a timeline (real recordings)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.data_report import dataset_stats, format_stats, plot_stats

    stats = dataset_stats(args.dataset)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    print(format_stats(stats))
    for path in plot_stats(args.dataset, stats):
        print(f"plot: {path}")
    return 0


def run_media(args: argparse.Namespace) -> int:
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import write_media

    storages = {"both": ("sqlite3", "mcap"), "none": ()}.get(args.storage, (args.storage,))
    for seed in args.seeds:
        conv = generate_conversation(seed, with_audio=True)
        folder = args.out / f"conversation_{seed:07d}"
        if folder.exists():
            return _fail(f"{folder} exists; choose a new output folder")
        files = write_media(conv, folder, storages=storages, compressed=not args.raw_images, photo=args.photo)
        print(f"seed {seed}: {conv.duration_s:.1f} s, listener style {conv.listener.style}")
        for path in [files.video_with_sound or files.video, files.wav, *files.bags.values()]:
            print(f"  {path}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from face_expr_ros.learning import recordings

    if (args.bag is None) == (args.speaker_video is None):
        return _fail("give either --speaker-video or --bag")
    if args.bag is not None:
        topics = recordings.BagTopics(args.camera_topic, args.audio_topic, args.listener_topic, args.sample_rate)
        cid = args.id or args.bag.name
        conv = recordings.from_bag(cid, args.bag, topics, args.asr, args.vosk_model)
    else:
        cid = args.id or args.speaker_video.stem
        conv = recordings.from_files(cid, args.speaker_video, args.audio, args.listener_video, args.asr,
                                     args.vosk_model)
    manifest = recordings.write_single(args.out, conv, args.split)
    print(f"built {cid}: {conv.n_frames} frames, {len(conv.words)} words recognised, speaker face in "
          f"{100 * conv.metadata['speaker_face_fraction']:.0f}% of frames; {args.out} now holds "
          f"{len(manifest.conversations)} conversation(s)")
    return 0
