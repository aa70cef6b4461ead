"""``fulora generate`` as a script, for ``accelerate launch`` (which runs a file, not a console command).

    accelerate launch --num_processes 4 scripts/generate.py --base stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --adapter fangyijie/fu-lora --weight-name fetal_ultrasound_v1.0.safetensors --preset study --out synth
"""

import sys

from fulora_data.cli import main

if __name__ == "__main__":
    main(["generate", *sys.argv[1:]], prog_name="fulora generate")
