"""Write a video twice in a row (packets copied, timestamps shifted): a 2400-frame benchmark
video from the 1200-frame one in seconds, without encoding it again.

    python benchmarks/extra/concat_video.py IN.mp4 OUT.mp4
"""

import sys

import av


def main(src: str, dst: str) -> None:
    """Copy the video stream of ``src`` twice into ``dst``."""
    with av.open(src) as inp, av.open(dst, "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        packets = [p for p in inp.demux(stream) if p.size]
        times = sorted(p.pts for p in packets)
        span = times[-1] + (times[1] - times[0])
        for shift in (0, span):
            for packet in packets:
                packet.pts += shift
                packet.dts += shift
                packet.stream = target
                out.mux(packet)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
