# The thirteenth session's three GPU calls (issue 11), each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data) at code f9f380d; each call's log is callN_call.log.
# Call 1 (cold start), timeout_s 600:
BUDGET=575 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 5000:6000 --json $OUT/lb_hs_5000.json' \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 6000:7000 --json $OUT/lb_hs_6000.json'
# Call 2 (warm), timeout_s 600:
BUDGET=560 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 7000:8000 --json $OUT/lb_hs_7000.json' \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 8000:9000 --json $OUT/lb_hs_8000.json'
# Call 3 (warm), timeout_s 590:
BUDGET=565 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks mmlu --mmlu-subjects high_school_statistics college_computer_science human_aging college_medicine marketing conceptual_physics high_school_microeconomics security_studies clinical_knowledge high_school_mathematics --json $OUT/lb_mmlu_a.json' \
  'python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --reference-subjects agronomy anatomy ancient_chinese arts chinese_literature clinical_knowledge college_engineering_hydrology college_mathematics food_science genetics high_school_physics journalism legal_and_moral_basis logical professional_medicine security_study traditional_chinese_medicine --json $OUT/cmmlu_g2.json' \
  'python3 -m firefly_eval.cli cmmlu --ckpt /tmp/l7 --data-dir .carry/data/cmmlu -o $OUT/cmmlu_full.json'
