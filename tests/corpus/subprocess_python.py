import subprocess, sys
print(subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True, text=True).stdout.strip())
print(subprocess.run(["python3", "-c", "import sys; print(sys.version_info[:2])"],
                     capture_output=True, text=True).stdout.strip() == str(sys.version_info[:2]))
