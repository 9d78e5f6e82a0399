#!/usr/bin/env python3
"""List functions over 80 lines in src/ (not tests, examples, benches or fuzz/): a brace counter,
rough but enough to keep the structure rule of the developers guide: `python3 scripts/long_functions.py`."""
import re,sys,subprocess
files=subprocess.check_output(['git','ls-files','*.rs']).decode().split()
for f in files:
    if '/tests/' in f or f.startswith('fuzz/') or '/examples/' in f or '/benches/' in f: continue
    lines=open(f).read().split('\n')
    for i,l in enumerate(lines):
        m=re.match(r'^(\s*)(pub(\([^)]*\))? )?(async )?(const )?(unsafe )?fn (\w+)',l)
        if not m: continue
        ind=m.group(1)
        for j in range(i+1,len(lines)):
            if lines[j]==ind+'}' : break
        else: continue
        n=j-i+1
        if n>80: print(n,f,i+1,m.group(7))
