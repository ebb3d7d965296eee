def run_client():
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.connect(('localhost', int(__import__('os').environ['UPECHOD_SEED_PORT'])))
    while True:
        user_input = input("Enter message > ")
        if not user_input:
            break
        c.send(user_input.encode('utf-8'))
        response = c.recv(1024)
        print(f"Response: {response.decode()}")
run_client()
